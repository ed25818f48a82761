"""Faults of the API: the exporter keeps serving, says what happened, and ends up exact."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from exporter.api import windowing
from exporter.api.client import Outcome, TokenGate
from exporter.tools.simulator import SELECT_BY, Faults, Traffic
from tests.support.harness import (
    TOKEN,
    Clock,
    assert_conversations,
    assert_kpis,
    expected_counts,
    make_config,
    make_poller,
    within_the_cap,
)
from tests.support.process import assert_private, by_label, conversations, interactions

START = 1_790_000_100
ALL_BUT_QUOTA = {
    "server_error": 0.06,
    "error_envelope": 0.05,
    "truncated": 0.05,
    "hang": 0.03,
    "data_null": 0.05,
    "busy": 0.02,
    "maintenance": 0.03,
}


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_a_week_of_every_fault_ends_exact(sim_factory, caplog, select_by):
    """Driven clock: the poller sleeps as it would (backoff, quota pause), the API misbehaves;
    it selects rows by their date, or by when their session closed (up to 10 minutes on)."""
    clock = Clock(START)
    traffic = Traffic(
        seed=13,
        rate_per_minute=30,
        late_fraction=0.1,
        late_max=200,
        duplicate_fraction=0.03,
        stop=START + 6 * 86400,
        select_by=select_by,
    )
    rates = {kind: rate / 2 for kind, rate in ALL_BUT_QUOTA.items()}
    faults = Faults(**rates, quota=0.002, hang_seconds=0.5, retry_after=0, seed=5)
    sim, url = sim_factory(traffic, clock, faults=faults)
    poller = make_poller(
        make_config(url, timeout="300ms", max_backoff="1h", max_catchup="3d"), clock
    )
    seen_down = seen_quota = False
    max_wait = 0.0
    end = START + 7 * 86400
    while clock.now < end:
        poller.poll_once()
        snap = poller.snapshot()
        seen_down |= not snap.up
        seen_quota |= snap.quota_exhausted
        wake = poller.next_attempt(clock.now)
        max_wait = max(max_wait, wake - clock.now)
        clock.now = wake + 0.5
    # Let it finish cleanly so the last windows are re-read and compared.
    faults.__init__(seed=1)  # type: ignore[misc]
    for _ in range(2):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
    snap = poller.snapshot()
    assert snap.up and seen_down and seen_quota
    assert set(sim.stats.faults) == {*ALL_BUT_QUOTA, "quota"}
    # The outcome counters tell what happened.
    for outcome in (
        Outcome.SERVER_ERROR,
        Outcome.INVALID_RESPONSE,
        Outcome.TIMEOUT,
        Outcome.MAINTENANCE,
        Outcome.QUOTA_EXCEEDED,
        Outcome.SUCCESS,
        Outcome.EMPTY,  # the quiet last day: 404 answers mean no rows, not failure
    ):
        assert snap.requests[outcome] > 0, outcome
    assert sim.stats.violations == 0
    assert "skipping" not in caplog.text and "skipped span" not in caplog.text
    assert max_wait > 3600  # a quota pause waited for the next local day
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    assert_kpis(snap, rows)
    assert_conversations(snap.counts, rows, 3600, 86400)


def test_backoff_grows_with_repeated_failures_and_honours_retry_after(sim_factory):
    clock = Clock(START)
    sim, url = sim_factory(Traffic(seed=1), clock, faults=Faults(busy=1.0, retry_after=0))
    poller = make_poller(make_config(url, retries=0, max_backoff="40m"), clock)
    waits = []
    for _ in range(6):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
        waits.append(poller.next_attempt(clock.now) - clock.now)
    assert waits[0] < 300
    assert waits[1:] == sorted(waits[1:]) and waits[2] >= 1200 - 1
    assert max(waits) <= 2400
    sim.faults.retry_after = 3000
    clock.now += 10
    poller.poll_once()
    assert poller.next_attempt(clock.now) - clock.now >= 2400  # capped by max_backoff


def test_quota_exhaustion_pauses_the_token_for_every_operation_until_the_local_day(sim_factory):
    zone = ZoneInfo("America/Bogota")
    noon = int(datetime(2026, 12, 1, 12, 0, tzinfo=zone).timestamp())
    clock = Clock(noon)
    faults = Faults(quota=1.0)
    sim, url = sim_factory(Traffic(seed=3), clock, faults=faults)
    cfg = make_config(url)
    gate = TokenGate(0)
    first, second = make_poller(cfg, clock, gate), make_poller(cfg, clock, gate)
    clock.now += 61
    assert not first.poll_once()
    asked = sim.stats.requests
    assert not second.poll_once()  # shares the token: does not even ask
    assert sim.stats.requests == asked
    assert first.snapshot().quota_exhausted and second.snapshot().quota_exhausted
    midnight = int(datetime(2026, 12, 2, 0, 0, tzinfo=zone).timestamp())
    assert midnight <= first.next_attempt(clock.now) <= midnight + 120
    faults.quota = 0.0
    clock.now = first.next_attempt(clock.now)
    assert first.poll_once() and second.poll_once()
    assert not first.snapshot().quota_exhausted
    assert first.cursor == second.cursor and first.cursor is not None and first.cursor >= midnight


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_exporter_process_keeps_serving_under_faults_and_ends_exact(live_exporter, select_by: str):
    # By close time a session's rows share one second, which must stay under the cap.
    cap = 40
    # Traffic begins once the exporter has surely made its first poll, even on a loaded
    # machine (its first window is the last complete one; rows before it are for backfill).
    traffic = within_the_cap(
        lambda begin: Traffic(
            seed=99,
            rate_per_minute=300,
            daily_curve=False,
            late_fraction=0.1,
            late_max=1.5,
            duplicate_fraction=0.05,
            start=begin,
            stop=begin + 16,
            select_by=select_by,
            close_delay=6,
            think=0.02,
        ),
        int(time.time()) + 10,
        cap,
    )
    start = traffic.start
    assert start is not None
    faults = Faults(**ALL_BUT_QUOTA, hang_seconds=0.7, retry_after=1, seed=3)
    polling = {
        "interval": "1s",
        "settle_delay": "1s",
        "lookback": "4s",
        "request_spacing": "10ms",
        "retry_backoff": "50ms",
        "timeout": "500ms",
        "max_backoff": "2s",
    }
    kpis = {"session_timeout": "3s", "recontact_window": "1m"}
    live = live_exporter(
        traffic, name="faulty", cap=cap, polling=polling, latency=0.005, faults=faults, kpis=kpis
    )
    sim, exporter = live.sim, live.exporter.start()
    try:
        # Once it serves (its start-up may take seconds on a loaded machine), every scrape
        # must answer, whatever the API does.
        exporter.wait_first_poll(start)
        deadline = time.time() + 90
        scrapes = 0
        while time.time() < deadline:
            m = exporter.metrics()  # every scrape must answer, whatever the API does
            scrapes += 1
            until = m.get("wolkvox_collected_until_timestamp_seconds", {})
            if until and min(until.values()) >= traffic.quiet_after + 4 + 3 + 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("never caught up:\n" + exporter.log()[-3000:])
        assert scrapes > 20
        assert interactions(m) == expected_counts(traffic.all_rows())
        talks = conversations(m, "faulty")
        assert_conversations(talks, traffic.all_rows(), 3, 60, hours=False)
        outcomes = by_label(m, "wolkvox_api_requests_total", "outcome")
        assert outcomes["server_error"] > 0 and outcomes["invalid_response"] > 0
        assert sim.stats.violations == 0
        pages = exporter.get("/") + exporter.get("/metrics")
    finally:
        code = exporter.stop()
    assert code == 0
    log = exporter.log()
    assert "Traceback" not in log
    # Debug logs of a run full of errors, the metrics and the landing page hold no secret
    # and no customer data.
    assert_private(log + pages, TOKEN, traffic.all_rows())
