"""API economy: requests per poll over a simulated hour of steady state.

Target (issue 5): exactly one request per operation per interval; the look-back re-read rides in
the same request. Runs the real poller against the simulator on a driven clock.
"""

from __future__ import annotations

from benchmarks.common import T0, ZONE, machine
from exporter import config, simulator, windowing
from exporter.client import TokenGate
from exporter.poller import Poller

TOKEN = "bench-token"


def main() -> None:
    now = [float(T0)]
    clock = lambda: now[0]  # noqa: E731
    traffic = simulator.Traffic(seed=5, zone=ZONE, rate_per_minute=300)
    sim = simulator.Simulator({"default": traffic}, {TOKEN}, latency=0, clock=clock)
    srv, url = simulator.serve(sim)
    cfg = config.from_mapping(
        {
            "operations": [{"name": "a", "base_url": url, "token": TOKEN}],
            "polling": {"request_spacing": "0s"},
        }
    )
    poller = Poller(cfg.operations[0], cfg.polling, cfg.labels, TokenGate(0), clock=clock)
    polls = 12
    for _ in range(polls):
        now[0] = windowing.next_poll_at(now[0], 300, 60) + 0.5
        poller.poll_once()
    srv.shutdown()
    print(f"machine: {machine()}")
    print(
        f"simulated hour: {polls} polls, {sim.stats.requests} requests, "
        f"{sim.stats.requests / polls:.2f} requests per poll  target 1.00"
    )


if __name__ == "__main__":
    main()
