"""Ingest as a live poller does it: consecutive windows, each answer read once, against
json.loads of the same bodies in turns.

`ingest.py` measures one 60,000-row answer counted into an empty tally (a first read or a
catch-up). A live poll is another case: a few thousand rows, most of them from sessions that
are open already (a 5 s window holds one or two messages of a conversation), into a tally that
holds an hour of them. Each answer is parsed with json.loads and then counted (decode, ingest,
publish, forget), the two timed in turns so that the machine's moods weigh on both alike.

    python -m benchmarks.live_ingest [--window 5] [--rows 2000] [--answers 240]
"""

from __future__ import annotations

import argparse
import json
import time
from zoneinfo import ZoneInfo

from benchmarks.common import machine
from benchmarks.pinned import PinnedTraffic
from exporter.api.records import decode
from exporter.counting.tally import Tally
from tests.support.harness import operation_settings

T0 = 1_790_000_100 - 1_790_000_100 % 300


def answers(window: int, rows: int, count: int) -> list[tuple[bytes, int, int]]:
    traffic = PinnedTraffic(
        seed=100, zone=ZoneInfo("America/Bogota"), rate_per_minute=rows / window * 60
    )
    out = []
    for k in range(count):
        first, last = T0 + k * window, T0 + (k + 1) * window - 1
        data = [r.record for r in traffic.rows(first, last)]
        head = {"code": "200", "error": None, "msg": f" {len(data)} records were found"}
        out.append((json.dumps({**head, "data": data}, ensure_ascii=False).encode(), first, last))
    return out


def run(window: int, rows: int, count: int) -> tuple[float, float, int, int]:
    """CPU ms per 1,000 rows of json.loads and of counting, over the second half of the
    answers (the first half fills the tally), and the rows and open sessions at the end."""
    bodies = answers(window, rows, count)
    tally = Tally(operation_settings())

    def count_one(body: bytes, first: int, last: int) -> None:
        start = first - first % window
        tally.ingest(decode(body), first, last, (start, last - last % window))
        tally.publish(start, time.time(), first - 600)
        tally.forget_before(last + 1)

    half = len(bodies) // 2
    for body, first, last in bodies[:half]:
        count_one(body, first, last)
        tally.saved()
    floor = ours = 0.0
    total = 0
    for body, first, last in bodies[half:]:
        started = time.process_time()
        total += len(json.loads(body)["data"])
        floor += time.process_time() - started
        started = time.process_time()
        count_one(body, first, last)
        ours += time.process_time() - started
        tally.saved()  # as after a poll's save (not timed: `poll_phases.py` times the save)
    return floor / total * 1e6, ours / total * 1e6, total, len(tally.conversations)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--window", type=int, default=5, help="seconds per answer")
    p.add_argument("--rows", type=int, default=2000, help="rows per answer")
    p.add_argument("--answers", type=int, default=240)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(f"machine: {machine()}")
    ratios = []
    for _ in range(args.runs):
        floor, ours, rows, open_ = run(args.window, args.rows, args.answers)
        ratios.append(ours / floor)
        print(
            f"{rows:,} rows in {args.rows:,}-row answers: json.loads {floor:.2f} ms per 1,000, "
            f"counting {ours:.2f} ms ({ours / floor:.2f}x); {open_:,} sessions open",
            flush=True,
        )
    print(f"best {min(ratios):.2f}x json.loads")


if __name__ == "__main__":
    main()
