"""Scrape: render /metrics with 10,000 series, against prometheus_client's own metrics.

Target (issue 5): rendering our exposition takes no longer than `generate_latest` on an
equivalent registry of plain metrics (a labelled Counter with the same 10,000 series), both
in-process and over HTTP (our server against prometheus_client's `start_http_server`).
"""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

from benchmarks.common import best_of, machine
from exporter.counting.counts import Counts
from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.polling.snapshot import Snapshot

SERIES = 10_000


class FrozenPoller:
    """A snapshot source (collector.SnapshotSource) that always gives the same snapshot."""

    name = "bench"
    ready = True
    store = None

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def snapshot(self) -> Snapshot:
        return self._snap


def label_sets() -> list[tuple[str, str, str]]:
    return [
        (f"channel{i % 10}", f"rp{i // 10 % 100}", f"answer {i // 1000}") for i in range(SERIES)
    ]


def ours() -> CollectorRegistry:
    keys = label_sets()
    snap = Snapshot(
        name="bench",
        counts=Counts(interactions={k: i for i, k in enumerate(keys)}, rejected={}, overflow={}),
        outcome_names=[],
        last_success=time.time(),
        collected_until=0,
        duration_buckets=(0,) * 12,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([FrozenPoller(snap)], 300))
    return registry


def plain() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter(
        "wolkvox_interactions",
        "h",
        ["operation", "channel", "rp_id", "routing_answer"],
        registry=registry,
    )
    for i, (c, r, a) in enumerate(label_sets()):
        counter.labels("bench", c, r, a).inc(i)
    return registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def main() -> None:
    mine, theirs = ours(), plain()
    in_ours = best_of(lambda: generate_latest(mine), 15)
    in_plain = best_of(lambda: generate_latest(theirs), 15)

    app_server, _ = server.serve(server.App(mine, []), "127.0.0.1", 0)
    our_url = f"http://127.0.0.1:{app_server.server_address[1]}/metrics"
    port = free_port()
    started: Any = start_http_server(port, addr="127.0.0.1", registry=theirs)
    plain_url = f"http://127.0.0.1:{port}/metrics"
    assert fetch(our_url).count(b"\nwolkvox_interactions_total{") == SERIES
    http_ours = best_of(lambda: fetch(our_url), 15)
    http_plain = best_of(lambda: fetch(plain_url), 15)
    app_server.shutdown()
    if isinstance(started, tuple):
        started[0].shutdown()

    print(f"machine: {machine()}")
    print(f"{SERIES} series")
    print(
        f"in-process: ours {in_ours * 1000:6.1f} ms, plain {in_plain * 1000:6.1f} ms, "
        f"ratio {in_ours / in_plain:.2f}  target <= 1.00"
    )
    print(
        f"over HTTP:  ours {http_ours * 1000:6.1f} ms, plain {http_plain * 1000:6.1f} ms, "
        f"ratio {http_ours / http_plain:.2f}  target <= 1.00"
    )


if __name__ == "__main__":
    main()
