"""Where the exporter's CPU goes per poll, by phase, measured in its own threads.

py-spy samples with `--gil` on these machines (without it, threads waiting in the kernel count
as busy), and SQLite releases the GIL while it writes: profiles showed the state save at 1% of
the exporter's CPU when it was a third. This benchmark runs the real exporter CLI as
`versus_naive.py` does (pinned traffic, its own process, scraped every 3 s, `lookback: 0s`),
with each phase's function wrapped to add up the CPU its thread spends inside it
(`time.thread_time`, which counts SQLite, compression and socket work alike), and prints it per
poll beside the process's whole CPU from /proc, with the minor page faults of each phase and
the cyclic garbage collector's CPU by generation (wherever it ran).

    python -m benchmarks.poll_phases [--only 2000x1] [--seconds 60]

Phases nest: a poll holds its ingests and its commit, a commit its save, a scrape its page.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import gc
import json
import os
import resource
import runpy
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from benchmarks.end_to_end import cpu_seconds
from benchmarks.pinned import PinnedTraffic
from benchmarks.versus_naive import SCENARIOS, SETTLE, ZONE, Scenario, _exporter, _page, _sum
from exporter.tools import simulator

# (phase, inside, module, owner, function): `inside` names the phase it is part of.
PHASES = (
    ("poll", "", "exporter.polling.poller", "Poller", "poll_once"),
    ("answer decode", "poll", "exporter.api.client", "", "_read_answer"),
    ("ingest", "poll", "exporter.counting.tally", "Tally", "ingest"),
    ("publish", "poll", "exporter.polling.ingest", "Ingest", "publish"),
    ("forget (sessions end)", "poll", "exporter.polling.ingest", "Ingest", "forget"),
    ("commit", "poll", "exporter.polling.poller", "Poller", "commit"),
    ("state export", "commit", "exporter.polling.poller", "Poller", "export_state"),
    ("snapshot", "commit", "exporter.polling.poller", "Poller", "_build_snapshot"),
    ("state save (SQLite)", "commit", "exporter.state.store", "StateStore", "save"),
    ("API exchange", "", "exporter.api.client", "Exchanger", "_exchange"),
    ("scrape", "", "exporter.exposition.server", "Handler", "_serve"),
    ("page encode", "scrape", "exporter.exposition.collector", "WolkvoxCollector", "page"),
)
_OUT, _MARK = "POLL_PHASES_OUT", "POLL_PHASES_MARK"


def _hooked() -> None:
    """In the exporter's process: wrap the phases, reset the sums after the warm-up, write
    them at exit, then run the CLI as `python -m exporter.cli` would."""
    sums: dict[str, list[float]] = {name: [0, 0.0, 0] for name, *_ in PHASES}
    lock = threading.Lock()

    def process_now() -> list[float]:
        """The process's CPU seconds and minor page faults so far."""
        return [time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt]

    started = process_now()

    def wrap(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            try:
                return f(*args, **kwargs)
            finally:
                spent = time.thread_time() - t
                faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults
                with lock:
                    sums[name][0] += 1
                    sums[name][1] += spent
                    sums[name][2] += faults

        return timed

    for name, _, module, owner, function in PHASES:
        where = __import__(module, fromlist=[owner or function])
        where = getattr(where, owner) if owner else where  # a class's method, or a function
        setattr(where, function, wrap(name, getattr(where, function)))

    def reset() -> None:
        time.sleep(float(os.environ[_MARK]))
        with lock:
            for v in sums.values():
                v[:] = [0, 0.0, 0]
            started[:] = process_now()

    def dump() -> None:
        with lock:
            cpu, faults = (now - then for now, then in zip(process_now(), started, strict=True))
            out = {**sums, "process": [1, cpu, faults]}
        Path(os.environ[_OUT]).write_text(json.dumps(out))

    collecting: dict[str, float] = {}

    def collected(phase: str, info: dict[str, int]) -> None:
        """The cyclic collector's own CPU, by generation: it runs inside the phases above."""
        if phase == "start":
            collecting["t"] = time.thread_time()
            return
        name = f"gc, generation {info['generation']}"
        with lock:
            v = sums.setdefault(name, [0, 0.0, 0])
            v[0] += 1
            v[1] += time.thread_time() - collecting.pop("t", time.thread_time())

    gc.callbacks.append(collected)
    threading.Thread(target=reset, daemon=True).start()
    atexit.register(dump)
    sys.argv = ["wolkvox-exporter", *sys.argv[1:]]
    runpy.run_module("exporter.cli", run_name="__main__")


def run(s: Scenario, seconds: float) -> tuple[dict[str, list[float]], float, float]:
    """Phase sums over `seconds` after a warm-up, rows counted then, and CPU from /proc."""
    tenants: dict[str, simulator.Traffic] = {
        f"op{i}": PinnedTraffic(seed=100 + i, zone=ZONE, rate_per_minute=s.rate_per_minute)
        for i in range(s.operations)
    }
    tokens = {f"ours-{i}" for i in range(s.operations)}
    sim = simulator.Simulator(tenants, tokens, latency=0.0, cap=4 * s.rows_per_answer)
    srv, url = simulator.serve(sim)
    stop = threading.Event()
    warm = 3 * s.window + SETTLE + 3
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        os.environ.update({_OUT: str(d / "phases.json"), _MARK: str(warm)})
        p = _exporter(d, "ours", url, s, lookback=0, module="benchmarks.poll_phases")

        def scrape() -> None:
            while not stop.wait(3.0):
                with contextlib.suppress(OSError):
                    _page(p.port)

        try:
            time.sleep(3)  # up, and its first poll under way
            threading.Thread(target=scrape, daemon=True).start()
            time.sleep(warm - 3)
            p.mark()
            time.sleep(seconds)
            rows = _sum(p.port, p.rows_metric) - p.rows
            cpu = cpu_seconds(p.proc.pid) - p.cpu
        finally:
            stop.set()
            p.proc.terminate()
            p.proc.wait(timeout=120)
            srv.shutdown()
        sums = json.loads((d / "phases.json").read_text())
    return sums, rows, cpu


def main() -> None:
    if sys.argv[1:2] == ["--config"]:  # the exporter's process (see `run`)
        _hooked()
        return
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--only", default="2000x1", help="scenario names of versus_naive.py")
    args = p.parse_args()
    print(f"machine: {machine()}")
    for s in SCENARIOS:
        if s.name not in args.only.split(","):
            continue
        sums, rows, cpu = run(s, args.seconds)
        polls = sums["poll"][0] or 1
        print(f"{s.name}: {rows:,.0f} rows in {polls} polls; CPU per poll, ms (inclusive):")
        faults = sums["process"][2] / polls
        print(
            f"  process (/proc)              {cpu * 1000 / polls:7.2f}   {faults:7.0f} page faults"
        )
        for name, inside, *_ in PHASES:
            calls, spent, faults = sums[name]
            where = f"  (in {inside})" if inside else ""
            print(
                f"  {name:28s} {spent * 1000 / polls:7.2f}   {calls / polls:4.1f} calls"
                f"   {faults / polls:7.0f} page faults{where}"
            )
        for name in sorted(k for k in sums if k.startswith("gc")):
            calls, spent, _ = sums[name]
            print(
                f"  {name:28s} {spent * 1000 / polls:7.2f}   {calls / polls:4.1f} calls  (in any)"
            )


if __name__ == "__main__":
    main()
