"""Kill the real exporter at random moments of its polling; in the end every counter is exact."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from exporter.state.store import StateStore
from exporter.tools import simulator
from tests.support.harness import (
    TOKEN,
    assert_conversations,
    expected_counts,
    expected_kpis,
    within_the_cap,
)
from tests.support.process import assert_private, by_label, conversations, interactions, parse


@pytest.mark.parametrize("select_by", simulator.SELECT_BY)
def test_sigkill_at_random_moments_neither_loses_nor_doubles(live_exporter, select_by: str):
    rng = random.Random(20261129)
    # By close time a session's rows share one second, which must stay under the cap.
    cap = 30 if select_by == "date" else 60
    # Traffic begins once the exporter has surely made its first poll (which reads only the
    # last complete window: rows before it are history, for backfill), even on a loaded machine.
    traffic = within_the_cap(
        lambda begin: simulator.Traffic(
            seed=77,
            rate_per_minute=600,
            daily_curve=False,
            late_fraction=0.15,
            late_max=1.5,
            duplicate_fraction=0.05,
            start=begin,
            stop=begin + 24,
            select_by=select_by,
            close_delay=5,
            think=0.02,
        ),
        int(time.time()) + 10,
        cap,
    )
    start, stop = traffic.start, traffic.stop
    assert start is not None and stop is not None
    polling = {
        "interval": "1s",
        "settle_delay": "1s",
        "lookback": "3s",
        "request_spacing": "10ms",
        "retry_backoff": "100ms",
    }
    timeouts = {"session_timeout": "3s", "recontact_window": "1m"}
    live = live_exporter(
        traffic, name="crashy", cap=cap, polling=polling, state=True, debug=False, kpis=timeouts
    )
    sim, exporter, state = live.sim, live.exporter, live.state
    assert state is not None
    last_seen: Counter[tuple[str, str, str]] = Counter()
    kills = 0
    try:
        exporter.start()
        # Its first window must not miss traffic, or the counts below could not be exact.
        exporter.wait_first_poll(start)
        exporter.kill()
        while time.time() < stop - 1:
            exporter.start()
            deadline = time.time() + rng.uniform(0.4, 2.5)
            while time.time() < deadline:
                time.sleep(0.05)
                try:
                    seen = interactions(exporter.metrics())
                except OSError:
                    continue
                # A counter a scrape has shown never goes down, not even across a SIGKILL.
                assert all(seen[k] >= n for k, n in last_seen.items())
                last_seen = seen
            exporter.kill()
            kills += 1
            time.sleep(rng.uniform(0, 1.0))  # down for a while: the restart catches up
        assert kills >= 5

        exporter.start()
        final = parse(exporter.wait_collected(traffic.quiet_after + 3 + 3 + 2, timeout=60))
        rows = traffic.all_rows()
        truth = expected_counts(rows)
        assert sum(truth.values()) > 150
        # Should this ever fail, the exporter's own account of its polls, saves and restarts
        # is what tells where rows went: it comes with the failure.
        assert interactions(final) == truth, "exporter log tail:\n" + exporter.log()[-6000:]
        # The KPI counters survive the kills as exactly: sessions and first transfers.
        kpis = expected_kpis(rows)
        sessions = by_label(final, "wolkvox_sessions_total", "channel")
        assert {ch: int(n) for ch, n in sessions.items() if n} == dict(kpis.sessions)
        transferred = by_label(final, "wolkvox_sessions_transferred_total", "channel")
        assert {ch: int(n) for ch, n in transferred.items() if n} == dict(kpis.transferred)
        # Each session observed once when it ended, whenever the kills fell.
        assert_conversations(conversations(final, "crashy"), rows, 3, 60, hours=False)
        assert sim.stats.violations == 0

        # SIGTERM: exit 0 with the state saved.
        assert exporter.stop() == 0
        saved = StateStore(state).load()["crashy"]
        assert sum(saved.tally.counts.interactions.values()) == sum(truth.values())
    finally:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.kill()
    log = exporter.log()
    assert "Traceback" not in log
    assert_private(log, TOKEN, traffic.all_rows())
