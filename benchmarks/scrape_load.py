"""Scrapes under load: 200 concurrent scrapers for 20 s, and the page at the worst-case size.

Issue 12's aims: no errors and p99 under 1 s with 200 scrapers on loopback (before: 89 scrapes/s,
p99 8.9 s, 14% errors); the page of an operation at `labels.max_series` renders in under 1 s.
The server runs in a process of its own, so the scrapers' threads do not share its interpreter;
prometheus_client's own `start_http_server` with the same series, under the same load, is the
baseline the throughput is compared with.

    python -m benchmarks.scrape_load [--seconds 20] [--scrapers 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

from benchmarks.common import machine
from benchmarks.scrape import FrozenPoller, free_port
from exporter.counting.counts import Counts
from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.polling.snapshot import Snapshot
from exporter.settings.config import Labels

MAX_SERIES = Labels().max_series
CHANNELS = 50


def worst_case(series: int = MAX_SERIES) -> Snapshot:
    """One operation with `series` label sets (at most: max_series) plus a folded one per
    channel, each in the counter and in the last-window gauge."""
    keys = [
        (f"channel{i % CHANNELS}", f"rp{i // CHANNELS % 200}", f"answer {i}") for i in range(series)
    ]
    keys += [(f"channel{c}", "__other__", "__other__") for c in range(CHANNELS)]
    counts = {k: 1000 + i for i, k in enumerate(keys)}
    return Snapshot(
        name="worst",
        counts=Counts(
            interactions=counts,
            last_window=dict(counts),
            received=10**6,
            duplicates=10,
            rejected={"invalid_date": 1},
            overflow={"routing_answer": 5},
            outcomes={(f"channel{c}", "bot_answer"): 5 for c in range(CHANNELS)},
            sessions_total={f"channel{c}": 7 for c in range(CHANNELS)},
            transferred_total={f"channel{c}": 3 for c in range(CHANNELS)},
            customers_last_window={f"channel{c}": 2 for c in range(CHANNELS)},
        ),
        outcome_names=["transferred", "masked_input", "none", "bot_answer"],
        last_success=time.time(),
        collected_until=int(time.time()),
        requests={"success": 100},
        duration_buckets=(1,) * 12,
        duration_sum=1.0,
    )


def ours_registry(series: int = MAX_SERIES) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([FrozenPoller(worst_case(series))], 300))
    return registry


def baseline_registry(series: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter(
        "x_interactions",
        "x",
        ["operation", "channel", "rp_id", "routing_answer"],
        registry=registry,
    )
    gauge = Counter(
        "x_last_window", "x", ["operation", "channel", "rp_id", "routing_answer"], registry=registry
    )
    for (ch, rp, ans), n in worst_case(series).counts.interactions.items():
        counter.labels("worst", ch, rp, ans).inc(n)
        gauge.labels("worst", ch, rp, ans).inc(n)
    return registry


def _serve(which: str, port: int, series: int) -> None:
    if which == "ours":
        poller = FrozenPoller(worst_case(series))
        app = server.App(ours_registry(series), [poller])
        server.serve(app, "127.0.0.1", port)
    else:
        start_http_server(port, addr="127.0.0.1", registry=baseline_registry(series))
    while True:
        time.sleep(3600)


def load(port: int, seconds: float, scrapers: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
            except OSError:
                with lock:
                    errors += 1

    threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    done = len(latencies)
    return {
        "per_second": done / seconds,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(0.99 * (done - 1))] if latencies else float("nan"),
        "errors": errors,
        "scrapes": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument(
        "--series", type=int, default=400, help="label sets of the page under load (a busy day)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")

    registry = ours_registry()
    renders = []
    for _ in range(5):
        started = time.perf_counter()
        page = generate_latest(registry)
        renders.append(time.perf_counter() - started)
    print(
        f"worst-case page ({MAX_SERIES + CHANNELS} label sets per family): "
        f"{len(page) / 1e6:.2f} MB, rendered in {min(renders) * 1000:.0f} ms (aim: under 1 s)"
    )

    results = {}
    for which in ("ours", "baseline"):
        port = free_port()
        proc = multiprocessing.Process(target=_serve, args=(which, port, args.series), daemon=True)
        proc.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        results[which] = load(port, args.seconds, args.scrapers)
        proc.terminate()
        proc.join()
        r = results[which]
        print(
            f"{which:9s} {args.series + CHANNELS} label sets, {args.scrapers} scrapers, "
            f"{args.seconds:.0f} s: {r['per_second']:.0f} "
            f"scrapes/s, p50 {r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms, "
            f"errors {r['errors']} of {r['scrapes'] + r['errors']}"
        )
    ratio = results["ours"]["per_second"] / results["baseline"]["per_second"]
    print(
        f"throughput against prometheus_client's server: {ratio:.2f}x (aim: no errors, p99 < 1 s)"
    )


if __name__ == "__main__":
    main()
