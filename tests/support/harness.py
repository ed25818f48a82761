"""What tests share: a hand-moved clock, configs and pollers built as the exporter builds them,
ground truth keyed the way the exporter labels it, and the tools a test may need."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pytest

from exporter.api.client import TokenGate
from exporter.counting import labels
from exporter.polling.poller import Poller
from exporter.settings import config
from exporter.settings.config import OperationSettings
from exporter.state.store import OperationState, StateStore
from exporter.tools import simulator

TOKEN = "tok-3f9a1c77e2-SECRET"


class Clock:
    """A wall clock the test moves by hand, shared by the simulator and the poller."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_config(url: str, **polling: Any) -> config.Config:
    raw_labels = polling.pop("labels", {})
    raw_state = polling.pop("state", {})
    raw_kpis = polling.pop("kpis", {})
    settings = {
        "interval": "5m",
        "settle_delay": "1m",
        "lookback": "5m",
        "request_spacing": "0s",
        "retry_backoff": "0s",
        **polling,
    }
    return config.from_mapping(
        {
            "operations": [{"name": "main", "base_url": url, "token": TOKEN}],
            "polling": settings,
            "labels": raw_labels,
            "state": raw_state,
            "kpis": raw_kpis,
        }
    )


def make_poller(
    cfg: config.Config,
    clock: Clock,
    gate: TokenGate | None = None,
    index: int = 0,
    store: StateStore | None = None,
    saved: OperationState | None = None,
) -> Poller:
    return Poller(
        cfg.per_operation()[index],
        gate or TokenGate(cfg.polling.request_spacing),
        clock=clock,
        store=store,
        saved=saved,
    )


def other_poller(url: str, clock: Clock, store: StateStore | None = None) -> Poller:
    """A second operation, `other`, beside make_poller's `main`: its own simulator and gate."""
    cfg = make_config(url)
    other = cfg.model_copy(
        update={"operations": [cfg.operations[0].model_copy(update={"name": "other"})]}
    )
    return Poller(other.per_operation()[0], TokenGate(0), clock=clock, store=store)


def operation_settings(
    zone: str = "America/Bogota",
    interval: str = "5m",
    labels: Mapping[str, object] | None = None,
    kpis: Mapping[str, object] | None = None,
) -> OperationSettings:
    """One operation's settings for code that never calls its API, built as the exporter
    builds them: from a config mapping."""
    cfg = config.from_mapping(
        {
            "operations": [
                {"name": "main", "base_url": "http://127.0.0.1:9", "token": "t", "timezone": zone}
            ],
            "polling": {"interval": interval},
            "labels": dict(labels or {}),
            "kpis": dict(kpis or {}),
        }
    )
    return cfg.per_operation()[0]


def within_the_cap(
    make: Callable[[int], simulator.Traffic], start: int, cap: int
) -> simulator.Traffic:
    """`make(start)`, or traffic started a few seconds later, whose busiest second selects
    fewer rows than `cap`.

    A request range cannot be narrower than a second, so rows beyond the cap in one second are
    out of any client's reach (the exporter warns of it): ground truth holds them, no answer
    does. Traffic's rows depend on the minute it starts in, and by close time a session's rows
    share one second: about one start in fifty gave the crash test's traffic such a second,
    which failed it now and then, in CI too. Drawn around, tests that compare with the truth
    keep their small caps (answers still split) and are exact by construction."""
    for begin in range(start, start + 120):
        traffic = make(begin)
        if max(Counter(row.selected for row in traffic.all_rows()).values()) < cap:
            return traffic
    raise AssertionError(f"no start within two minutes keeps every second under {cap} rows")


def expected_counts(
    rows: list[simulator.Row], max_length: int = 64
) -> Counter[tuple[str, str, str]]:
    """Ground truth keyed the way the exporter labels it (normalisation is unit-tested apart)."""
    out: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        rec = cast(dict[str, Any], r.record)  # JSON values, as the API sent them
        out[
            (
                labels.channel(rec["channel"]),
                labels.rp_id(rec["rp_id"]),
                labels.routing_answer(rec["routing_answer"], max_length),
            )
        ] += 1
    return out


@dataclass
class Kpis:
    """Ground truth of the KPI counters, classified independently of the exporter's regexes:
    the simulator's transfer answer is exactly `transfer_skill`."""

    outcomes: Counter[tuple[str, str]]
    sessions: Counter[str]
    transferred: Counter[str]


def outcome_of(answer: str) -> str:
    return simulator.outcome_of(answer)


def expected_kpis(rows: list[simulator.Row]) -> Kpis:
    outcomes: Counter[tuple[str, str]] = Counter()
    sessions: dict[str, str] = {}
    transferred: set[str] = set()
    for r in rows:
        rec = cast(dict[str, Any], r.record)  # JSON values, as the API sent them
        channel = labels.channel(rec["channel"])
        outcomes[(channel, outcome_of(rec["routing_answer"]))] += 1
        sessions[rec["session_id"]] = channel
        if rec["routing_answer"] == "transfer_skill":
            transferred.add(rec["session_id"])
    return Kpis(
        outcomes,
        Counter(sessions.values()),
        Counter(sessions[s] for s in transferred),
    )


def assert_kpis(snap: Any, rows: list[simulator.Row]) -> None:
    """A poller snapshot's KPI counters equal the ground truth of `rows`."""
    truth = expected_kpis(rows)
    assert {k: n for k, n in snap.counts.outcomes.items() if n} == dict(truth.outcomes)
    assert snap.counts.sessions_total == dict(truth.sessions)
    assert snap.counts.transferred_total == dict(truth.transferred)
    assert sum(truth.transferred.values()) > 0


CONVERSATION_FIELDS = tuple(simulator.Talks.__dataclass_fields__)


def assert_conversations(
    counts: Any, rows: list[simulator.Row], timeout: float, window: float, hours: bool = True
) -> simulator.Talks:
    """Every conversation figure of `counts` (an exporter's Counts, or process.conversations of
    a scrape) equals the ground truth of `rows`, all sessions of which have ended; and the
    scenario exercised each figure. Seconds of real-time traffic (not `hours`) hold a dozen
    sessions or so: every result need not occur, and no customer comes back."""
    truth = simulator.conversation_truth(rows, timeout, window)
    for name in CONVERSATION_FIELDS:
        got = {k: v for k, v in getattr(counts, name).items() if v}
        assert got == {k: v for k, v in getattr(truth, name).items() if v}, name
    assert not any(counts.sessions_open.values())
    assert truth.sessions_ended
    if hours:
        results = {result for _, result in truth.sessions_ended}
        assert results == {"transferred", "contained", "abandoned"}
        assert truth.sessions_with_fallback and truth.session_time_to_transfer
        assert truth.sessions_recontact
    return truth


def required_binary(name: str, package: str = "prometheus") -> str:
    """Path of a tool from a Debian package; in CI its absence is a failure, elsewhere the
    test is skipped."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Debian package {package})")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


def promtool() -> str:
    return required_binary("promtool")
