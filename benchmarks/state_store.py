"""The state store at a busy operation's scale: the JSON file of version 2 against the database.

For each size, one operation's tally holds a realistic counted answer (6,000 rows: label sets,
fingerprints) and N sessions spread over a 24-hour horizon (144 ten-minute buckets, one in ten
transferred). Measured, each in a fresh process so that sizes do not share a heap:
- save per poll: after one poll's worth of change (N/288 new sessions in the newest bucket, the
  oldest bucket expired), the old store rewrites the whole file; the new one writes the changes;
- load at start: reading the store and restoring the tally;
- size on disk, the transient RSS of a save (peak during it over RSS before it), and the RSS per
  session after a restart against the same sessions built in place.

Targets (issue 16): save under 50 ms at 1M sessions and flat in N; no transient RSS on save;
restart at 1M under 1 s; RSS per session after restore within 20% of built-in-place.

    python -m benchmarks.state_store [--sizes 10000,100000,1000000,2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.common import T0, answer_bytes, machine, rss_kib
from exporter.api import records
from exporter.counting.seen import BUCKET
from exporter.counting.tally import Tally
from exporter.state.store import (
    OperationState,
    StateStore,
    _V2OperationState,
    _V2StateFile,
    atomic_write,
)
from tests.support.harness import operation_settings

HORIZON_BUCKETS = 144  # 24h of ten-minute buckets
POLLS = 5


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def new_tally() -> Tally:
    return Tally(operation_settings())


def counted() -> Tally:
    """A tally with one counted 6,000-row answer: label sets, fingerprints."""
    tally = new_tally()
    body, first, last = answer_bytes(6000)
    tally.ingest(records.decode(body), first, last)
    return tally


def add_sessions(tally: Tally, n: int) -> Tally:
    """n sessions over the horizon, one in ten transferred."""
    per_bucket = max(1, n // HORIZON_BUCKETS)
    start = T0 - HORIZON_BUCKETS * BUCKET
    key = 1
    for b in range(HORIZON_BUCKETS):
        count = per_bucket if b < HORIZON_BUCKETS - 1 else n - per_bucket * b
        keys = range(key, key + count)
        key += count
        channels = dict.fromkeys((k * 2654435761 % 2**64 for k in keys), "whatsapp")
        moved = set(list(channels)[::10])
        tally.sessions.admit(channels, moved, start + b * BUCKET)
    return tally


def one_poll(tally: Tally, n: int, poll: int) -> None:
    """A poll's change: new sessions in the newest bucket, the oldest bucket expired."""
    newest = T0 + poll * 300
    fresh = {(n + poll * 10_000_000 + i) * 40503 % 2**64: "web" for i in range(max(1, n // 288))}
    tally.sessions.admit(fresh, set(list(fresh)[::10]), newest)
    tally.sessions.forget_before(T0 - HORIZON_BUCKETS * BUCKET + (poll + 1) * BUCKET)


def state_of(tally: Tally, sessions: bool) -> OperationState:
    return OperationState(cursor=T0, origin=T0, requests={}, tally=tally.export(sessions))


# -- the JSON file of version 2, as the exporter wrote it before the database -----------------


def old_save(path: Path, tally: Tally) -> None:
    saved = tally.export(sessions=False)
    c = saved.counts
    transferred = tally.sessions.transferred
    op = _V2OperationState(
        cursor=T0,
        origin=T0,
        requests={},
        interactions=[(*k, n) for k, n in c.interactions.items()],
        received=c.received,
        duplicates=c.duplicates,
        rejected=c.rejected,
        overflow=c.overflow,
        by_window={s: [(*k, n) for k, n in w.items()] for s, w in saved.by_window.items()},
        last_window=[(*k, n, saved.last_active.get(k, 0.0)) for k, n in c.last_window.items()],
        seen=saved.seen,
        outcomes=[(*k, n) for k, n in c.outcomes.items()],
        sessions_total=c.sessions_total,
        transferred_total=c.transferred_total,
        sessions=[
            (bucket, key, transferred[key])
            for bucket, keys in tally.sessions.buckets.items()
            for key in keys
        ],
    )
    atomic_write(path, msgspec.json.encode(_V2StateFile(2, time.time(), {"a": op})))


def old_load(path: Path) -> Tally:
    old = msgspec.json.decode(path.read_bytes(), type=_V2StateFile).operations["a"]
    tally = new_tally()
    sessions = tally.sessions
    for bucket, key, moved in old.sessions:  # the old restore: one session at a time
        if key not in sessions.transferred:
            sessions.buckets.setdefault(bucket, []).append(key)
        sessions.transferred[key] = moved
    return tally


# -- one measurement, in a child process -----------------------------------------------------


def child(kind: str, n: int, directory: Path) -> dict[str, Any]:
    path = directory / ("state.json" if kind == "old" else "state.db")
    out: dict[str, Any] = {}
    tally = counted()
    base = rss_kib("VmRSS")
    add_sessions(tally, n)
    out["built_kib_per_session"] = (rss_kib("VmRSS") - base) / max(1, n)
    if kind == "old":
        old_save(path, tally)
    else:
        store = StateStore(path)
        store.save("a", state_of(tally, sessions=True))
        tally.sessions.saved()
    saves, transient = [], 0
    for poll in range(POLLS):
        one_poll(tally, n, poll)
        before = rss_kib("VmRSS")
        reset_peak()
        started = time.perf_counter()
        if kind == "old":
            old_save(path, tally)
        else:
            changes = tally.sessions.pending()
            assert store.save("a", state_of(tally, sessions=False), changes)
            tally.sessions.saved()
        saves.append(time.perf_counter() - started)
        transient = max(transient, rss_kib("VmHWM") - before)
    out["save_ms"] = sorted(saves)[len(saves) // 2] * 1000
    out["save_transient_mib"] = transient / 1024
    out["size_mib"] = sum(p.stat().st_size for p in directory.iterdir()) / 2**20
    if kind == "new":
        store.close()
    return out


def child_load(kind: str, n: int, directory: Path) -> dict[str, Any]:
    path = directory / ("state.json" if kind == "old" else "state.db")
    base = rss_kib("VmRSS")
    started = time.perf_counter()
    if kind == "old":
        tally = old_load(path)
    else:
        tally = new_tally()
        tally.restore(StateStore(path).load()["a"].tally)
    seconds = time.perf_counter() - started
    sessions = len(tally.sessions)
    return {
        "load_s": seconds,
        "restored_kib_per_session": (rss_kib("VmRSS") - base) / max(1, sessions),
        "sessions": sessions,
    }


def measure(kind: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        result: dict[str, Any] = {}
        for step in ("save", "load"):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.state_store", "--child", step, kind, str(n), d],
                capture_output=True,
                text=True,
                check=True,
            )
            result.update(json.loads(proc.stdout))
        return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000,100000,1000000,2000000")
    p.add_argument("--child", nargs=4, metavar=("STEP", "KIND", "N", "DIR"))
    args = p.parse_args()
    if args.child:
        step, kind, n, d = args.child
        fn = child if step == "save" else child_load
        print(json.dumps(fn(kind, int(n), Path(d))))
        return
    print(f"machine: {machine()}, {os.cpu_count()} CPUs")
    print(
        "| sessions | store | save per poll | transient RSS on save | load at start | size "
        "| RSS per session restored / built |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in map(int, args.sizes.split(",")):
        for kind, label in (("old", "JSON v2"), ("new", "SQLite")):
            r = measure(kind, n)
            ratio = r["restored_kib_per_session"] / max(1e-9, r["built_kib_per_session"])
            print(
                f"| {n:,} | {label} | {r['save_ms']:.1f} ms | {r['save_transient_mib']:.0f} MiB "
                f"| {r['load_s'] * 1000:.0f} ms | {r['size_mib']:.1f} MiB "
                f"| {r['restored_kib_per_session'] * 1024:.0f} / "
                f"{r['built_kib_per_session'] * 1024:.0f} B ({ratio:.2f}x) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
