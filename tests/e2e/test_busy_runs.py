"""Busy operations through the poller, in process: answers of thousands of rows at the record
cap, split and re-asked until complete, exact against the simulator's ground truth.

Long runs rather than unit checks (each moves megabytes of answers): kept out of the fast loop."""

from __future__ import annotations

from exporter.api.client import Outcome
from exporter.tools.simulator import Traffic
from tests.support.harness import (
    Clock,
    expected_counts,
    make_config,
    make_poller,
)
from tests.unit.test_poller import START, assert_exact, run_polls


def test_a_busy_operation_is_read_in_parts_sized_to_the_cap_from_its_first_poll(sim_factory):
    """3,000 rows a minute against diagram_9's 6,000-row cap (an API that refuses a larger
    range). The first poll knows nothing: a third of the window measures the traffic, two
    parts read the rest. Later polls read window and look-back (30,000 rows) in six parts
    sized from the last poll, where halving from the whole range took fifteen."""
    clock = Clock(START)
    traffic = Traffic(seed=13, rate_per_minute=3000, daily_curve=False)
    sim, url = sim_factory(traffic, clock, cap=6000, cap_mode="error")
    poller = make_poller(make_config(url, max_records_per_request=6000), clock)
    run_polls(poller, clock, 1, 300, 60)
    assert sim.stats.requests == 3
    run_polls(poller, clock, 3, 300, 60)
    assert sim.stats.requests == 3 + 3 * 6
    snap = poller.snapshot()
    assert snap.requests[Outcome.TOO_MANY_RECORDS] == 0
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    # Each session once. (A session counts under the channel of its records in the first
    # answer it appears in; at this volume two of the simulator's random session ids collide,
    # on two channels, so the per-channel split depends on where the answers were cut.)
    assert sum(snap.counts.sessions_total.values()) == len({r.record["session_id"] for r in rows})


def test_an_answer_at_the_record_cap_is_split_until_complete(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=9, rate_per_minute=300, daily_curve=False, duplicate_fraction=0.05)
    _sim, url = sim_factory(traffic, clock, cap=40)
    poller = make_poller(make_config(url, max_records_per_request=40), clock)
    run_polls(poller, clock, 4, 300, 60)
    assert_exact(poller, traffic, clock)
    assert sum(poller.snapshot().requests.values()) > 4 * 16


def test_an_api_that_refuses_large_ranges_is_split_too(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=10, rate_per_minute=300, daily_curve=False)
    _, url = sim_factory(traffic, clock, cap=40, cap_mode="error")
    poller = make_poller(make_config(url, max_records_per_request=40), clock)
    run_polls(poller, clock, 3, 300, 60)
    assert_exact(poller, traffic, clock)
    assert poller.snapshot().requests[Outcome.TOO_MANY_RECORDS] > 0
