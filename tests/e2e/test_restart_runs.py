"""Restarts through a simulated day, in process: counters resume and the catch-up is exact.

A long run rather than a unit check: kept out of the fast loop (tests/unit)."""

from __future__ import annotations

from exporter.tools.simulator import Traffic
from tests.support.harness import (
    Clock,
    assert_kpis,
    expected_counts,
    make_config,
)
from tests.unit.test_state import START, poll, restart


def test_counters_resume_and_catch_up_is_exact_after_restarts(sim_factory, tmp_path):
    clock = Clock(START)
    traffic = Traffic(
        seed=31, rate_per_minute=90, late_fraction=0.2, late_max=250, duplicate_fraction=0.05
    )
    _, url = sim_factory(traffic, clock)
    cfg = make_config(url)
    path = tmp_path / "state.json"
    poller = restart(cfg, clock, path)
    origin = None
    for round_ in range(6):
        poll(poller, clock, 5)
        origin = origin or poller.origin
        before = poller.snapshot()
        clock.now += 777 * round_  # down for a while: the next poll catches up
        poller = restart(cfg, clock, path)
        after = poller.snapshot()
        # Counters continue from their saved values: no reset, nothing re-counted.
        assert after.counts.interactions == before.counts.interactions
        assert after.counts.sessions_total == before.counts.sessions_total
        assert after.counts.transferred_total == before.counts.transferred_total
        assert after.counts.outcomes == before.counts.outcomes
        assert after.counts.customers_last_window == before.counts.customers_last_window
        assert after.counts.received == before.counts.received
        assert after.collected_until == before.collected_until
        assert after.requests == before.requests
    poll(poller, clock, 3)
    snap = poller.snapshot()
    assert poller.origin == origin and snap.collected_until is not None
    rows = traffic.rows(origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    assert_kpis(snap, rows)
    # The state database (with its write-ahead log) remembers sessions only as digests, and
    # customers not at all.
    saved = b"".join(p.read_bytes() for p in tmp_path.glob("state.json*"))
    for r in rows[:200]:
        assert str(r.record["session_id"]).encode() not in saved
        for field in ("customer_phone", "customer_email", "customer_name"):
            assert str(r.record[field]).encode() not in saved
