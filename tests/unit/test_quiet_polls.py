"""A poll that counts nothing saves and publishes only where the poller stands; one that
counted saves the whole tally. Neither loses nor re-counts a row across a restart."""

from __future__ import annotations

from exporter.api import windowing
from exporter.api.client import Outcome
from exporter.counting.counts import Counts
from exporter.exposition import families
from exporter.polling.snapshot import Snapshot
from exporter.state.store import StateStore
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, make_config, make_poller

START = 1_790_000_100


def poll(poller, clock: Clock, times: int = 1) -> None:
    for _ in range(times):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()


def quiet_traffic() -> Traffic:
    """Rows for the first half hour, then none."""
    return Traffic(seed=4, rate_per_minute=30, daily_curve=False, stop=START + 1800)


def test_a_quiet_poll_saves_the_cursor_and_request_counters_and_republishes_the_counts(
    sim_factory, tmp_path
):
    clock = Clock(START)
    _, url = sim_factory(quiet_traffic(), clock)
    store = StateStore(tmp_path / "state.db")
    cfg = make_config(url, kpis={"session_timeout": "5m"})
    poller = make_poller(cfg, clock, store=store)
    poll(poller, clock, 20)  # the traffic, its sessions ended, then quiet polls
    before = poller.snapshot()
    poll(poller, clock)
    after = poller.snapshot()
    assert after.counts is before.counts  # nothing counted: the same counts, not a copy
    assert after.collected_until is not None and before.collected_until is not None
    assert after.collected_until == before.collected_until + 300
    assert after.requests[Outcome.EMPTY] == before.requests[Outcome.EMPTY] + 1
    saved = StateStore(tmp_path / "state.db").load()["main"]
    assert saved.cursor == poller.cursor
    assert saved.requests[Outcome.EMPTY] == after.requests[Outcome.EMPTY]
    assert saved.tally.counts.interactions == after.counts.interactions
    # A restart from it goes on at the new cursor with every count.
    again = make_poller(cfg, clock, store=StateStore(tmp_path / "state.db"), saved=saved)
    assert again.cursor == poller.cursor
    assert again.snapshot().counts.interactions == after.counts.interactions


def test_a_quiet_poll_after_a_failed_save_saves_the_whole_tally(sim_factory, tmp_path):
    """The saves of the polls that counted the last rows fail: the polls after count nothing,
    but must not save their cursor beside the tally saved before, which lacks those rows."""
    clock = Clock(START)
    _, url = sim_factory(quiet_traffic(), clock)
    store = StateStore(tmp_path / "state.db")
    # No session ends within the test: a quiet poll changes no count.
    poller = make_poller(make_config(url, kpis={"session_timeout": "20h"}), clock, store=store)
    poll(poller, clock, 3)
    real_save = store.save
    store.save = lambda *a, **k: False  # type: ignore[method-assign]
    poll(poller, clock, 6)  # the last rows, counted, not saved; then quiet polls
    store.save = real_save  # type: ignore[method-assign]
    poll(poller, clock, 2)
    saved = StateStore(tmp_path / "state.db").load()["main"]
    assert saved.cursor == poller.cursor
    assert saved.tally.counts.interactions == poller.snapshot().counts.interactions
    assert sum(saved.tally.counts.interactions.values()) > 0


def test_a_commit_that_counted_nothing_renders_only_the_health_families_again():
    """Every family outside families.HEALTH reads only the counts: two snapshots that share
    their counts and differ in every health field give the same samples."""
    counts = Counts(interactions={("web", "1", "hola"): 3}, received=3)
    one = Snapshot("op", counts, ["bot_answer"])
    other = Snapshot(
        "op",
        counts,
        ["bot_answer"],
        up=False,
        polled=False,
        last_success=1.0,
        collected_until=2,
        requests={"success": 5},
        duration_buckets=(1, 2),
        duration_sum=3.0,
        last_error="x",
        quota_exhausted=True,
        quota_limit=10,
        quota_used=5,
        skipped_seconds=7,
        last_skip=8.0,
    )
    for family in families.OPERATION:
        a = list(families.render([one], "5m", [family]))
        b = list(families.render([other], "5m", [family]))
        same = [m.samples for m in a] == [m.samples for m in b]
        assert same == (family.name not in families.HEALTH), family.name
