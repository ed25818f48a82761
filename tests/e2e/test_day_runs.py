"""Whole simulated days through the poller, in process: exact against the simulator's ground truth.

Long runs rather than unit checks: kept out of the fast loop (tests/unit), run by the full suite."""

from __future__ import annotations

import pytest

from exporter.tools.simulator import SELECT_BY, Traffic
from tests.support.harness import (
    Clock,
    make_config,
    make_poller,
)
from tests.unit.test_poller import START, assert_exact, run_polls


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_a_day_of_polls_counts_every_row_once_with_late_and_repeated_rows(sim_factory, select_by):
    clock = Clock(START)
    traffic = Traffic(
        seed=11,
        rate_per_minute=60,
        late_fraction=0.2,
        late_max=300,
        duplicate_fraction=0.05,
        select_by=select_by,
    )
    sim, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url), clock)
    run_polls(poller, clock, 288, 300, 60)
    assert_exact(poller, traffic, clock)
    snap = poller.snapshot()
    assert snap.counts.duplicates > 0  # look-back re-reads did happen and were recognised
    # One request per poll in steady state: the look-back rides in the same request. The
    # first poll, knowing no traffic yet, measures it on a third of its window first.
    assert sum(snap.requests.values()) == 288 + 1
    assert sim.stats.violations == 0
    # Dedupe memory holds only the re-readable horizon, not the day.
    assert len(poller.tally.seen) < 4 * 60 * 12
    # By close time, rows come back dated before the range, and are counted all the same.
    assert (snap.counts.outside_range > 0) == (select_by == "close")
