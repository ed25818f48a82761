"""Shared helpers: realistic answers from the simulator, and a timer that takes the best of runs."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.pinned import PinnedTraffic
from exporter.tools.simulator import Row

ZONE = ZoneInfo("America/Bogota")
T0 = 1_790_000_100


def answer_bytes(records: int, seed: int = 1, start: int = T0) -> tuple[bytes, int, int]:
    """A diagram_9 answer of about `records` rows as the API sends it (pinned traffic), and
    its date range."""
    traffic = PinnedTraffic(seed=seed, zone=ZONE, rate_per_minute=600)
    rows: list[Row] = []
    end = start
    while len(rows) < records:
        rows.extend(traffic.minute(end))
        end += 60
    rows = rows[:records]
    body = json.dumps(
        {
            "code": "200",
            "error": None,
            "msg": f" {len(rows)} records were found",
            "data": [r.record for r in rows],
        },
        ensure_ascii=False,
    ).encode()
    return body, start, end - 1


def best_of(fn: Callable[[], object], repeat: int = 7) -> float:
    """Best wall time of `repeat` runs: the least disturbed by other work on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def best_of_each(fns: dict[str, Callable[[], object]], repeat: int = 7) -> dict[str, float]:
    """Best wall time of each function over `repeat` rounds that run them in turn, so a slow
    patch of a shared machine weighs on every side of a ratio alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"


def rss_kib(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)
