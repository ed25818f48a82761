"""The whole exporter process at a busy operation's scale, measured from outside.

The real CLI (`wolkvox-exporter --config ...`) runs in its own process against the simulated
API, which runs here, in the benchmark's process, with one tenant and one token per operation.
Windows are 5 s (interval 5s, settle 1s, look-back 5s, so each row is read twice, as in
production) and a scraper asks /metrics every 3 s. After a warm-up, for `--seconds`:
- the exporter's CPU (user + system, from /proc/PID/stat) per 1,000 rows received;
- the same bytes the simulator served, parsed with `json.loads` here: the floor any exporter in
  Python pays (target, issue 16: the whole process at most 3x that);
- scrape latency (median, worst) and the exporter's RSS at the end;
- where the exporter's CPU goes, sampled afterwards (not while the CPU is measured) with py-spy (`pip install py-spy`; run as root or
  with ptrace allowed) from the thread holding the GIL (a thread waiting on a socket, a lock or
  fsync releases it), grouped by the module a sample's innermost exporter frame is in.

    python -m benchmarks.end_to_end [--operations 1,5,20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.common import best_of, machine
from exporter.tools import simulator
from exporter.tools.simulator import Reply
from tests.support.process import free_port

ZONE = ZoneInfo("America/Bogota")
TICKS = os.sysconf("SC_CLK_TCK")
# Where a py-spy sample's innermost frame in our package puts it, by the package's folders
# (and the client's module). Frames outside the package (sqlite3, urllib3, ssl, json) count for
# the exporter module that called them.
PHASES = {
    "api/client.py": "HTTP exchange and body",
    "api/": "decode and ingest",
    "counting/": "decode and ingest",
    "state/": "state save",
    "polling/saving.py": "state save",
    "polling/": "poll bookkeeping and snapshot",
    "exposition/": "render /metrics",
}


# Innermost frames of a thread that waits (py-spy samples them too where it cannot tell).
IDLE = ("Condition.wait", "Event.wait", ".select (", "sleep (", "accept (", "Lock.acquire")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def received(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wolkvox_records_received_total")
    )


class Bodies:
    """The answer bodies the simulator served, to parse them again with json.loads."""

    def __init__(self, sim: simulator.Simulator) -> None:
        self.recording = False
        self.bodies: list[bytes] = []
        answer = sim.answer

        def recorded(tenant: str, params: dict[str, list[str]], token: str | None) -> Reply:
            reply = answer(tenant, params, token)
            if self.recording and reply.status == 200:
                self.bodies.append(reply.body)
            return reply

        setattr(sim, "answer", recorded)  # noqa: B010 (a method replaced on one instance)

    def json_loads_seconds(self) -> float:
        """Best of five passes over every body: the floor, measured on a quiet moment."""

        def parse_all() -> None:
            for body in self.bodies:
                json.loads(body)

        return best_of(parse_all, repeat=5)


def phases(profile: Path) -> Counter[str]:
    """py-spy's raw output: one line per stack, `frame;frame;... count`."""
    out: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        phase = "other (threads, logging, interpreter)"
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in IDLE):
            continue  # a thread waiting: no CPU
        for frame in reversed(frames):
            module = frame.rsplit("(", 1)[-1].split(":", 1)[0]
            inside = module.rsplit("exporter/", 1)[-1] if "exporter/" in module else ""
            found = next((p for prefix, p in PHASES.items() if inside.startswith(prefix)), None)
            if found is not None:
                phase = found
                break
        out[phase] += int(count)
    return out


def profile(pid: int, seconds: float, out: Path) -> Counter[str]:
    """Where the process's CPU goes over `seconds`, by phase; empty without py-spy."""
    if not shutil.which("py-spy"):
        return Counter()
    spy = ["py-spy", "record", "--gil", "-r", "200", "-d", str(int(seconds)), "-f", "raw"]
    subprocess.run(
        [*spy, "-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + 60,
        check=False,
    )
    return phases(out) if out.exists() else Counter()


def run(operations: int, rate_per_second: float, seconds: float) -> dict[str, object]:
    tokens = {f"token-{i}" for i in range(operations)}
    tenants = {
        f"op{i}": simulator.Traffic(
            seed=100 + i, zone=ZONE, rate_per_minute=rate_per_second * 60, daily_curve=False
        )
        for i in range(operations)
    }
    sim = simulator.Simulator(tenants, tokens, latency=0.0, cap=6000)
    bodies = Bodies(sim)
    srv, url = simulator.serve(sim)
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "config.yaml"
        ops = "\n".join(
            f"  - {{name: op{i}, base_url: '{url}/op{i}', token: token-{i}, "
            f"timezone: America/Bogota}}"
            for i in range(operations)
        )
        config.write_text(
            f"operations:\n{ops}\n"
            "polling: {interval: 5s, settle_delay: 1s, lookback: 5s, request_spacing: 0s}\n"
            f"state: {{path: {d}/state.db}}\n"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter.cli",
                "--config",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--log.level",
                "warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        latencies: list[float] = []
        stop = threading.Event()

        def scrape() -> None:
            while not stop.wait(3.0):
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10):
                        pass
                except OSError:
                    continue
                latencies.append(time.perf_counter() - started)

        scraper = threading.Thread(target=scrape, daemon=True)
        try:
            time.sleep(12)  # start, first polls, warm caches
            scraper.start()
            # The CPU is measured with no profiler attached (py-spy stops the process at every
            # sample, which costs it more CPU than it spends on its own at this scale), then
            # the breakdown is sampled for as long again.
            rows_before, cpu_before = received(port), cpu_seconds(proc.pid)
            bodies.recording = True
            time.sleep(seconds)
            bodies.recording = False
            rows = received(port) - rows_before
            cpu = cpu_seconds(proc.pid) - cpu_before
            rss = rss_mib(proc.pid)
            rows_before, cpu_before = received(port), cpu_seconds(proc.pid)
            breakdown = profile(proc.pid, seconds, Path(d) / "profile.txt")
            profiled = (cpu_seconds(proc.pid) - cpu_before) / max(1.0, received(port) - rows_before)
        finally:
            stop.set()
            proc.terminate()
            proc.wait(timeout=30)
            srv.shutdown()
    floor = bodies.json_loads_seconds()
    return {
        "operations": operations,
        "rows": rows,
        "cpu_per_1000": cpu / rows * 1e6 if rows else float("nan"),  # ms per 1,000 rows
        "ratio": cpu / floor if floor else float("nan"),
        "json_loads_per_1000": floor / rows * 1e6 if rows else float("nan"),
        "scrape_median_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "scrape_max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "rss_mib": rss,
        "breakdown": breakdown,
        "profiled_per_1000": profiled * 1e6,  # ms per 1,000 rows while py-spy samples
    }


def idle_penalty(pause: float = 5.0) -> float:
    """How much more CPU the same work takes right after the process idled `pause` seconds
    than when it runs back to back (median of three against best of five). The exporter runs
    after such a pause at every poll and scrape, while the json.loads floor runs hot; on some
    virtual machines the difference is large, and it is part of every fixed cost above."""
    body = json.dumps([{"channel": "web", "rp_id": str(i), "date": "x"} for i in range(2000)])

    def work() -> float:
        started = time.process_time()
        json.loads(body)
        return time.process_time() - started

    hot = min(work() for _ in range(5))
    cold = []
    for _ in range(3):
        time.sleep(pause)
        cold.append(work())
    return statistics.median(cold) / hot if hot else float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--operations", default="1,5,20")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument(
        "--rate", type=float, default=200, help="rows per second per operation (20 ops: a quarter)"
    )
    args = p.parse_args()
    print(f"machine: {machine()}, {os.cpu_count()} CPUs")
    print(f"the same json.loads after a 5 s idle: {idle_penalty():.1f}x its CPU back to back")
    print(
        "| operations | rows/s each | rows read | exporter CPU per 1,000 rows | json.loads per "
        "1,000 | ratio | scrape median / max | RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    breakdowns = []
    for n in map(int, args.operations.split(",")):
        rate = args.rate if n <= 5 else args.rate / 4
        r = run(n, rate, args.seconds)
        print(
            f"| {n} | {rate:.0f} | {r['rows']:,.0f} | {r['cpu_per_1000']:.1f} ms "
            f"| {r['json_loads_per_1000']:.1f} ms | {r['ratio']:.1f}x "
            f"| {r['scrape_median_ms']:.0f} / {r['scrape_max_ms']:.0f} ms "
            f"| {r['rss_mib']:.0f} MiB |",
            flush=True,
        )
        breakdowns.append((n, r["breakdown"], r["profiled_per_1000"]))
    for n, breakdown, profiled in breakdowns:
        assert isinstance(breakdown, Counter)
        total = sum(breakdown.values())
        if not total:
            print(f"{n} operations: no py-spy samples (install py-spy, run as root)")
            continue
        parts = ", ".join(f"{k} {v / total:.0%}" for k, v in breakdown.most_common())
        print(
            f"{n} operations, exporter CPU by phase ({total} samples; {profiled:.1f} ms per "
            f"1,000 rows while sampled): {parts}"
        )


if __name__ == "__main__":
    main()
