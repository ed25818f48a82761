"""API economy: requests per poll over a simulated hour of steady state, and per catch-up.

Target (issue 5): exactly one request per operation per interval; the look-back re-read rides in
the same request. Counted after the first poll, which knows no traffic yet and measures it on a
third of its window first (issue 16: a busy operation's first poll in at most 3 requests; also
printed, with the requests of a busy operation's later polls, read in parts sized to the cap). Runs the real poller against the simulator on a driven clock. For information
it also counts the requests that catch up a 6-hour outage, for a quiet and a busy operation:
catch-up requests span up to `catchup_span` (1h) while the traffic just read says they stay under
half the record cap.
"""

from __future__ import annotations

import logging

from benchmarks.common import T0, ZONE, machine
from exporter.api import windowing
from exporter.api.client import TokenGate
from exporter.polling.poller import Poller
from exporter.settings import config
from exporter.tools import simulator

TOKEN = "bench-token"
POLLS = 12
OUTAGE = 6 * 3600


class _Ranges(logging.Handler):
    """The `ranges` of the last "poll done" log line: requests before any split at the cap."""

    last = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "poll done":
            self.last = record.__dict__["ranges"]


def next_poll(poller: Poller, now: list[float]) -> None:
    """Move the driven clock to the next poll's moment, and poll."""
    now[0] = windowing.next_poll_at(now[0], 300, 60) + 0.5
    poller.poll_once()


def run(rate_per_minute: float) -> tuple[int, int, int, int]:
    """Requests for an hour of polls; then for the catch-up after an outage, the ranges it
    planned (before splits at the record cap) and the windows it covered."""
    now = [float(T0)]
    clock = lambda: now[0]  # noqa: E731
    traffic = simulator.Traffic(seed=5, zone=ZONE, rate_per_minute=rate_per_minute)
    sim = simulator.Simulator({"default": traffic}, {TOKEN}, latency=0, clock=clock)
    srv, url = simulator.serve(sim)
    cfg = config.from_mapping(
        {
            "operations": [{"name": "a", "base_url": url, "token": TOKEN}],
            "polling": {"request_spacing": "0s"},
        }
    )
    poller = Poller(cfg.per_operation()[0], TokenGate(0), clock=clock)
    ranges = _Ranges()
    logger = logging.getLogger("exporter.polling.poller")
    logger.addHandler(ranges)
    logger.setLevel(logging.INFO)
    try:
        next_poll(poller, now)
        first = sim.stats.requests
        for _ in range(POLLS):
            next_poll(poller, now)
        steady = sim.stats.requests - first
        before = poller.cursor
        assert before is not None
        now[0] = windowing.next_poll_at(now[0] + OUTAGE, 300, 60) + 0.5
        poller.poll_once()
        assert poller.cursor is not None
        windows = (poller.cursor - before) // 300
        return steady, sim.stats.requests - steady - first, ranges.last, windows
    finally:
        logger.removeHandler(ranges)
        srv.shutdown()


def busy(rate_per_minute: float, polls: int = 3) -> tuple[int, float, int]:
    """Requests of a busy operation's first poll and of each later one, and how many answers
    the API refused as over its 6,000-row cap (each a wasted call)."""
    now = [float(T0)]
    clock = lambda: now[0]  # noqa: E731
    traffic = simulator.Traffic(
        seed=13, zone=ZONE, rate_per_minute=rate_per_minute, daily_curve=False
    )
    sim = simulator.Simulator(
        {"default": traffic}, {TOKEN}, latency=0, clock=clock, cap=6000, cap_mode="error"
    )
    srv, url = simulator.serve(sim)
    cfg = config.from_mapping(
        {
            "operations": [{"name": "a", "base_url": url, "token": TOKEN}],
            "polling": {"request_spacing": "0s"},
        }
    )
    poller = Poller(cfg.per_operation()[0], TokenGate(0), clock=clock)
    try:
        next_poll(poller, now)
        first = sim.stats.requests
        for _ in range(polls):
            next_poll(poller, now)
        refused = sim.stats.by_status[400]  # "IF YOUR QUERY EXCEEDS 6000 RECORDS..."
        return first, (sim.stats.requests - first) / polls, refused
    finally:
        srv.shutdown()


def main() -> None:
    steady, *_ = run(300)
    print(f"machine: {machine()}")
    print(
        f"simulated hour: {POLLS} polls, {steady} requests, "
        f"{steady / POLLS:.2f} requests per poll  target 1.00"
    )
    first, later, refused = busy(3000)
    print(
        f"busy operation, 3,000 rows a minute, cap 6,000: first poll {first} requests (target "
        f"<= 3), later polls {later:.1f} each (window and look-back: 30,000 rows), "
        f"{refused} answers refused at the cap"
    )
    for name, rate in (("quiet", 20), ("busy", 400)):
        _, catch_up, planned, windows = run(rate)
        print(
            f"catch-up after a 6h outage, {name} operation ({rate} rows a minute): "
            f"{catch_up} requests for {windows} windows "
            f"({catch_up - planned} of them after answers at the record cap)"
        )


if __name__ == "__main__":
    main()
