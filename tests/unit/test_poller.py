"""The poller against the simulated API, on a clock the test drives: counts equal ground truth."""

from __future__ import annotations

import logging
import threading
from zoneinfo import ZoneInfo

from exporter.api import windowing
from exporter.api.client import Outcome, TokenGate, TokenInfo
from exporter.tools.simulator import Traffic
from tests.support.harness import (
    TOKEN,
    Clock,
    assert_kpis,
    expected_counts,
    make_config,
    make_poller,
)

START = 1_790_000_100  # a multiple of 300


def run_polls(poller, clock: Clock, polls: int, interval: int, settle: int) -> None:
    for _ in range(polls):
        clock.now = windowing.next_poll_at(clock.now, interval, settle) + 0.5
        poller.poll_once()


def assert_exact(poller, traffic: Traffic, clock: Clock) -> None:
    snap = poller.snapshot()
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert rows, "the scenario produced no traffic"
    assert snap.counts.interactions == dict(expected_counts(rows))
    assert_kpis(snap, rows)


def test_without_lookback_late_rows_are_missed_which_is_why_it_exists(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=3, rate_per_minute=60, late_fraction=0.3, late_max=200)
    _, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url, lookback="0s"), clock)
    run_polls(poller, clock, 24, 300, 60)
    snap = poller.snapshot()
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert sum(snap.counts.interactions.values()) < len(rows)


def test_failed_polls_keep_the_cursor_and_the_catch_up_is_exact(sim_factory):
    clock = Clock(START)
    traffic = Traffic(
        seed=5, rate_per_minute=80, daily_curve=False, late_fraction=0.1, late_max=100
    )
    sim, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url, retries=0), clock)
    run_polls(poller, clock, 5, 300, 60)
    cursor = poller.cursor
    sim.tokens.clear()  # the API now refuses the token
    run_polls(poller, clock, 6, 300, 60)
    snap = poller.snapshot()
    assert poller.cursor == cursor
    assert not snap.up
    assert snap.requests[Outcome.UNAUTHORIZED] == 6  # one per poll: an invalid token is not retried
    sim.tokens.add(TOKEN)
    run_polls(poller, clock, 1, 300, 60)
    assert poller.snapshot().up
    # Seven windows to catch up at 400-odd rows each: a request of six (under half the
    # 6,000-row cap), then one for the last, not seven.
    # (The first of the five polls measured the traffic on a third of its window first.)
    assert poller.snapshot().requests[Outcome.SUCCESS] == 5 + 1 + 2
    assert_exact(poller, traffic, clock)


def test_a_quiet_operation_catches_up_an_outage_in_hour_long_requests(sim_factory, caplog):
    clock = Clock(START)
    traffic = Traffic(
        seed=6, rate_per_minute=20, late_fraction=0.1, late_max=200, duplicate_fraction=0.05
    )
    sim, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url), clock)
    run_polls(poller, clock, 3, 300, 60)
    up = sim.stats.requests
    down = set(sim.tokens)
    sim.tokens.clear()
    clock.now += 6 * 3600 + 1800  # six and a half hours of outage
    poller.poll_once()
    sim.tokens.update(down)
    with caplog.at_level(logging.INFO, logger="exporter.polling"):
        caplog.clear()  # only this block's records, whatever earlier tests left set
        run_polls(poller, clock, 1, 300, 60)
    snap = poller.snapshot()
    assert snap.up
    (done,) = [r for r in caplog.records if r.getMessage() == "poll done"]
    assert (done.__dict__["windows"], done.__dict__["ranges"]) == (79, 7)
    # 79 windows behind: six hour-long requests and one of seven windows, not 79.
    assert snap.requests[Outcome.SUCCESS] == 3 + 1 + 7  # + the first poll's measurement
    assert sim.stats.requests == up + 1 + 7
    assert_exact(poller, traffic, clock)
    # The last-window gauge shows the last five minutes, not the last request's hour.
    last = windowing.align_down(clock.now - 60, 300) - 300
    window_rows = traffic.rows(last, last + 299, now=clock.now)
    assert sum(snap.counts.last_window.values()) == len(window_rows)


def test_catch_up_requests_shrink_as_soon_as_traffic_grows(sim_factory, caplog):
    """An operation closed at night and opening during the outage: hour-long requests while it
    is closed, then, after the one request that finds the traffic, as many windows as fit half
    the record cap."""
    clock = Clock(START)
    opens = START + 2 * 3600 + 1234
    traffic = Traffic(seed=4, rate_per_minute=40, daily_curve=False, start=opens)
    sim, url = sim_factory(traffic, clock, cap=1000)
    poller = make_poller(make_config(url, max_records_per_request=1000), clock)
    run_polls(poller, clock, 3, 300, 60)  # closed: empty windows
    before = sim.stats.requests
    clock.now += 5 * 3600
    with caplog.at_level(logging.INFO, logger="exporter.polling"):
        caplog.clear()  # only this block's records, whatever earlier tests left set
        run_polls(poller, clock, 1, 300, 60)
    (done,) = [r for r in caplog.records if r.getMessage() == "poll done"]
    windows, ranges = done.__dict__["windows"], done.__dict__["ranges"]
    assert windows == 61
    # Two closed hours, the hour the traffic starts in (over the 1,000-row cap, so it is split),
    # then 200 rows a window: two or three windows a request.
    assert ranges == 2 + 1 + 13
    assert sim.stats.requests - before == 20  # the splits included; 61 one window at a time
    assert_exact(poller, traffic, clock)


def test_a_busy_operation_catches_up_one_window_per_request(sim_factory):
    """Traffic that would fill the record cap in a few windows: catch-up requests stay one
    interval long, so none comes back full and has to be halved."""
    clock = Clock(START)
    traffic = Traffic(seed=7, rate_per_minute=60, daily_curve=False)
    sim, url = sim_factory(traffic, clock, cap=1000)
    poller = make_poller(make_config(url, max_records_per_request=1000, retries=0), clock)
    run_polls(poller, clock, 2, 300, 60)
    sim.tokens.clear()
    run_polls(poller, clock, 4, 300, 60)
    sim.tokens.add(TOKEN)
    run_polls(poller, clock, 1, 300, 60)
    snap = poller.snapshot()
    # The first poll reads a third alone to measure the traffic: one request more, once.
    assert snap.requests[Outcome.SUCCESS] == 3 + 5
    assert snap.requests[Outcome.TOO_MANY_RECORDS] == 0
    assert_exact(poller, traffic, clock)


def test_operations_sharing_a_token_never_overlap_their_requests(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=2, rate_per_minute=60)
    sim, url = sim_factory(traffic, clock, latency=0.02, cap=20)
    cfg = make_config(url, max_records_per_request=20)
    gate = TokenGate(0)
    pollers = [make_poller(cfg, clock, gate) for _ in range(3)]
    clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
    threads = [threading.Thread(target=p.poll_once) for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sim.stats.requests > 10
    assert sim.stats.violations == 0
    assert all(p.snapshot().up for p in pollers)


def test_the_simulator_does_catch_concurrent_use_of_a_token(sim_factory):
    """Control for the test above: without a shared gate the simulator reports violations."""
    clock = Clock(START)
    sim, url = sim_factory(Traffic(seed=2, rate_per_minute=60), clock, latency=0.05, cap=20)
    cfg = make_config(url, max_records_per_request=20, retries=0)
    pollers = [make_poller(cfg, clock, TokenGate(0)) for _ in range(3)]
    clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
    threads = [threading.Thread(target=p.poll_once) for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sim.stats.violations > 0
    assert sum(p.snapshot().requests[Outcome.CONCURRENCY_LIMITED] for p in pollers) > 0


def test_request_dates_are_in_the_operation_zone(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=4, rate_per_minute=120, zone=ZoneInfo("America/Mexico_City"))
    _, url = sim_factory(traffic, clock)
    cfg = make_config(url)
    cfg = cfg.model_copy(
        update={
            "operations": [cfg.operations[0].model_copy(update={"timezone": "America/Mexico_City"})]
        }
    )
    poller = make_poller(cfg, clock)
    run_polls(poller, clock, 12, 300, 60)
    assert_exact(poller, traffic, clock)
    assert poller.snapshot().counts.outside_range == 0  # dates read in the zone they were asked in


def test_the_token_quota_is_read_at_most_every_token_info_interval(sim_factory):
    clock = Clock(START)
    sim, url = sim_factory(Traffic(seed=4, rate_per_minute=20), clock, token_limit=5000)
    poller = make_poller(make_config(url, token_info_interval="1h"), clock)
    run_polls(poller, clock, 36, 300, 60)  # three hours
    snap = poller.snapshot()
    assert snap.quota_limit == 5000
    # 36 polls (the first measuring the traffic on a third of its window first: one request
    # more) and a token_info read each hour, after polls 1, 13 and 25: 3 reads.
    assert sim.used_today(TOKEN) == 36 + 1 + 3
    assert snap.quota_used == 25 + 1 + 3  # as token_info said after the 25th poll
    assert sum(snap.requests.values()) == 40  # each read is a request, and costs quota

    quiet = Clock(START)
    sim2, url2 = sim_factory(Traffic(seed=4, rate_per_minute=20), quiet)
    off = make_poller(make_config(url2), quiet)
    run_polls(off, quiet, 24, 300, 60)
    assert off.snapshot().quota_limit is None and sim2.used_today(TOKEN) == 24 + 1


def test_ready_never_runs_ahead_of_the_published_metrics(sim_factory):
    """/-/ready and /metrics must agree: a probe that sees ready must scrape `wolkvox_up 1`."""
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=4, rate_per_minute=20), clock)
    poller = make_poller(make_config(url, token_info_interval="1h"), clock)
    seen = []
    read = poller.client.token_info

    def observed() -> TokenInfo:
        # Mid-poll: the poll has succeeded but is not committed yet.
        seen.append((poller.ready, poller.snapshot().up))
        return read()

    poller.client.token_info = observed  # type: ignore[method-assign]
    run_polls(poller, clock, 1, 300, 60)
    assert seen == [(False, False)]
    assert poller.ready and poller.snapshot().up


def test_a_wrong_base_url_path_is_a_failure_not_a_quiet_operation(sim_factory, caplog):
    """The simulator's web server answers an HTML 404 for a path it does not serve, as a
    proxy or a mistyped base_url would: the operation is down, and says why."""
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=4, rate_per_minute=20), clock)
    poller = make_poller(make_config(url + "/not/here", retries=0), clock)
    run_polls(poller, clock, 2, 300, 60)
    snap = poller.snapshot()
    assert not snap.up
    assert snap.requests[Outcome.NOT_FOUND] == 2 and snap.requests[Outcome.EMPTY] == 0
    assert "check base_url" in snap.last_error
    assert "not_found" in caplog.text
    assert poller.next_attempt(clock.now) - clock.now > 300  # backs off like other failures


def test_a_poller_started_twice_runs_one_thread(sim_factory):
    """A reload that lands while the exporter starts may start a poller the start-up starts
    again: one thread polls, and stopping it stops all."""
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=4, rate_per_minute=10), clock)
    poller = make_poller(make_config(url), clock)
    poller.worker.start()
    poller.worker.start()
    try:
        assert [t.name for t in threading.enumerate()].count("poll-main") == 1
    finally:
        poller.shutdown()
    assert [t.name for t in threading.enumerate()].count("poll-main") == 0
