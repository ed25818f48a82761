"""Shared fixtures: a controllable clock, the simulated API on loopback, and poller factories."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter import config, labels, simulator
from exporter.client import TokenGate
from exporter.logs import LogfmtFormatter
from exporter.poller import Poller
from exporter.state import OperationState, StateStore

TOKEN = "tok-3f9a1c77e2-SECRET"


class Clock:
    """A wall clock the test moves by hand, shared by the simulator and the poller."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_config(url: str, **polling: Any) -> config.Config:
    raw_labels = polling.pop("labels", {})
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
        cfg.operations[index],
        cfg.polling,
        cfg.labels,
        gate or TokenGate(cfg.polling.request_spacing),
        clock=clock,
        store=store,
        saved=saved,
    )


def expected_counts(
    rows: list[simulator.Row], max_length: int = 64
) -> Counter[tuple[str, str, str]]:
    """Ground truth keyed the way the exporter labels it (normalisation is unit-tested apart)."""
    out: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        rec = r.record
        out[
            (
                labels.channel(rec["channel"]),
                labels.rp_id(rec["rp_id"]),
                labels.routing_answer(rec["routing_answer"], max_length),
            )
        ] += 1
    return out


@pytest.fixture
def sim_factory() -> Iterator[Any]:
    servers: list[simulator.SimulatorServer] = []

    def start(
        traffic: simulator.Traffic, clock: Callable[[], float], **kwargs: Any
    ) -> tuple[simulator.Simulator, str]:
        kwargs.setdefault("latency", 0.0)
        sim = simulator.Simulator({"default": traffic}, {TOKEN}, clock=clock, **kwargs)
        srv, url = simulator.serve(sim)
        servers.append(srv)
        return sim, url

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def required_binary(name: str) -> str:
    """Path of a tool from Debian's prometheus package; in CI its absence is a failure,
    elsewhere the test is skipped."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Debian package prometheus)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


def promtool() -> str:
    return required_binary("promtool")


@pytest.fixture(autouse=True)
def _structured_caplog(caplog: pytest.LogCaptureFixture) -> None:
    """Render captured logs as the exporter does, so tests see the structured fields too."""
    caplog.handler.setFormatter(LogfmtFormatter())
