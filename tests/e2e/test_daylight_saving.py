"""Daylight saving, in whole runs: live polls through both clock changes of a year in two zones,
a crash inside the repeated hour, a catch-up across the change, and backfill in chunks of every
alignment. Each exact against the simulator's ground truth, with no request ever inverted.

The simulated API compares bounds as wall-time strings (`wall_time`), as an API keeping the
operation's wall time does: a request for the repeated hour returns both occurrences' rows."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.api.records import DateParser
from exporter.state.store import StateStore
from exporter.tools.backfill.replay import Backfill
from exporter.tools.backfill.request import Request
from exporter.tools.simulator import SELECT_BY
from tests.support.harness import (
    Clock,
    assert_conversations,
    expected_counts,
    make_poller,
    promtool,
)
from tests.unit.test_daylight_saving import CHANGES, IDS, config, traffic
from tests.unit.test_poller import assert_exact, run_polls


@pytest.mark.parametrize("select_by", SELECT_BY)
@pytest.mark.parametrize(("zone", "kind", "change", "step"), CHANGES, ids=IDS)
def test_live_polls_through_a_clock_change_count_every_row_once(
    sim_factory, monkeypatch, zone, kind, change, step, select_by
):
    start = change - 3600
    clock = Clock(start)
    t = traffic(zone, select_by, start - 3600)
    sim, url = sim_factory(t, clock)
    poller = make_poller(config(url, zone), clock)
    published: list[int] = []
    publish = poller.ingest.publish

    def recording(window: int, now: float) -> None:
        published.append(window)
        publish(window, now)

    monkeypatch.setattr(poller.ingest, "publish", recording)
    run_polls(poller, clock, 42, 300, 60)  # 3.5 hours of polls, the change an hour in
    # The last-window gauges follow the windows in time order, through the repeated hour too.
    assert published == list(range(published[0], published[0] + 300 * len(published), 300))
    assert poller.cursor is not None and poller.cursor > change + abs(step) + 1800
    assert_exact(poller, t, clock)
    assert sim.stats.inverted == 0  # no request ever had its end before its start in wall time
    assert sim.stats.violations == 0
    if kind == "fall-back":
        snap = poller.snapshot()
        assert snap.counts.duplicates > 0  # the repeated hour did return rows twice


@pytest.mark.parametrize(("zone", "kind", "change", "step"), CHANGES, ids=IDS)
def test_a_crash_in_the_repeated_hour_and_a_catch_up_across_the_change_stay_exact(
    sim_factory, tmp_path, zone, kind, change, step
):
    """Polls up to the middle of the change (inside the repeated hour at a fall-back), the
    poller dropped without a goodbye and restored from the state database after an outage: its
    catch-up, in spans of up to an hour, crosses the rest of the change."""
    start = change - 2 * 3600
    clock = Clock(start)
    t = traffic(zone, "date", start - 3600)
    sim, url = sim_factory(t, clock)
    cfg = config(url, zone, state={"path": str(tmp_path / "state.db")})
    store = StateStore(tmp_path / "state.db")
    first = make_poller(cfg, clock, store=store)
    middle = change + abs(step) // 2 if step < 0 else change + 900
    while clock.now < middle:
        run_polls(first, clock, 1, 300, 60)
    del first  # gone: what it counted since its last commit is lost with it
    clock.now += 2 * 3600 + 17  # an outage: the catch-up crosses the rest of the change
    store = StateStore(tmp_path / "state.db")
    again = make_poller(cfg, clock, store=store, saved=store.load()["main"])
    run_polls(again, clock, 6, 300, 60)
    assert_exact(again, t, clock)
    assert sim.stats.inverted == 0


CHUNKS = {"5m": (300, 0), "1h-on-the-hour": (3600, 0), "1h-at-half-past": (3600, 1800)}


@pytest.mark.parametrize("chunk", sorted(CHUNKS))
@pytest.mark.parametrize(("zone", "kind", "change", "step"), CHANGES, ids=IDS)
def test_backfill_through_a_clock_change_is_exact_in_chunks_of_any_alignment(
    sim_factory, tmp_path, zone, kind, change, step, chunk
):
    """A backfill across the change, given --from and --to with explicit offsets, counts each
    row once; its output stays in time order (promtool builds blocks from it) and no request
    has inverted wall-time bounds."""
    size, shift = CHUNKS[chunk]
    start = change - 2 * 3600 - shift
    end = change + 3 * 3600 - shift
    t = traffic(zone, "date", start - 3600)
    sim, url = sim_factory(t, lambda: end + 3 * 3600)
    cfg = config(url, zone)
    name = cfg.operations[0].name
    request = Request(
        cfg, _when(start, zone), _when(end, zone), tmp_path / "out.om", cfg.per_operation(), size
    )
    summary = Backfill(request, now=lambda: end + 3 * 3600).run()
    truth = expected_counts(t.rows(start, end - 1))
    assert summary.tallies[name].counts.interactions == dict(truth)
    assert sim.stats.inverted == 0
    samples = _samples(tmp_path / "out.om")
    assert samples and all(
        times == sorted(times) for times in samples.values()
    )  # every series in time order, through the repeated hour
    made = subprocess.run(
        [
            promtool(),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(tmp_path / "out.om"),
            str(tmp_path / "blocks"),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr


def _when(epoch: int, zone: str) -> str:
    """An instant as backfill takes it unambiguously: wall time with its offset."""
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).isoformat()


def _samples(path: Path) -> dict[str, list[int]]:
    """Each series' sample timestamps, in file order."""
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        series, _, rest = line.rpartition("} ")
        out.setdefault(series, []).append(int(rest.split()[1]))
    return out


@pytest.mark.parametrize(("zone", "kind", "change", "step"), CHANGES, ids=IDS)
def test_a_catch_up_after_an_outage_across_the_change_is_exact(
    sim_factory, zone, kind, change, step
):
    """Polls stop half an hour before the change and resume two hours after it: the catch-up,
    in requests of up to an hour, reads across the change (and the whole repeated hour at a
    fall-back) in one go."""
    start = change - 2 * 3600
    clock = Clock(start)
    t = traffic(zone, "date", start - 3600)
    sim, url = sim_factory(t, clock)
    poller = make_poller(config(url, zone), clock)
    while clock.now < change - 1800:
        run_polls(poller, clock, 1, 300, 60)
    clock.now = change + abs(step) + 2 * 3600
    run_polls(poller, clock, 3, 300, 60)
    assert poller.cursor is not None and poller.cursor > change + abs(step) + 3600
    assert_exact(poller, t, clock)
    assert sim.stats.inverted == 0 and sim.stats.violations == 0


@pytest.mark.parametrize("select_by", SELECT_BY)
@pytest.mark.parametrize(("zone", "kind", "change", "step"), CHANGES, ids=IDS)
def test_conversations_through_a_clock_change_are_exact(
    sim_factory, zone, kind, change, step, select_by
):
    """Sessions across the change: every figure as the ground truth has it with each row read
    the way the exporter reads it (a repeated hour's rows as its first occurrence), so no
    duration is negative and no session ends before a row of the second occurrence can come.
    With Wolkvox's 60m timeout, a row of the second occurrence read an hour early still lies
    within the timeout of its session's rows of the first: no session is split by the change."""
    start = change - 5400
    t = dataclasses.replace(traffic(zone, select_by, start), stop=change + 3600)
    clock = Clock(start)
    _, url = sim_factory(t, clock)
    timeouts = {"session_timeout": "60m", "recontact_window": "1h"}
    cfg = config(url, zone, kpis=timeouts)
    poller = make_poller(cfg, clock)
    run_polls(poller, clock, 66, 300, 60)  # past the traffic's end, its timeout and look-back
    snap = poller.snapshot()
    assert snap.collected_until is not None
    assert snap.collected_until > t.quiet_after + 3600 + 600
    parse = DateParser(ZoneInfo(zone))
    assert poller.origin is not None
    rows = t.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    read = [dataclasses.replace(r, date=parse(str(r.record["date"])) or 0) for r in rows]
    assert snap.counts.interactions == dict(expected_counts(rows))
    truth = assert_conversations(snap.counts, read, 3600, 3600, hours=False)
    assert min(truth.session_duration_sum.values()) >= 0
    assert sum(truth.sessions_ended.values()) > 100
