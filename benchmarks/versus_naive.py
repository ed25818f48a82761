"""The exporter against the script a user would write, side by side, CPU read from /proc.

Both run as processes of their own against the same simulated API (pinned traffic,
`benchmarks/pinned.py`), each operation with a token per exporter, and a scraper here asks each
/metrics every 3 s. Printed per scenario: CPU per 1,000 rows of the exporter with `lookback:
0s` (the naive script reads each window once), of the naive script (`naive_exporter.py`), their
ratio (target, issue 24: at most 0.5 at 2,000 and 20,000 rows per answer, at most 1.0 at 200),
and of the exporter with the default's look-back of one interval (each row read twice), and
`json.loads` of the naive script's bodies run hot and after an idle pause as long as the
interval: code that runs after a pause costs more on these machines, and both exporters pay it.

    python -m benchmarks.versus_naive [--seconds 60] [--only 2000x10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.common import machine
from benchmarks.end_to_end import cpu_seconds, profile
from benchmarks.pinned import PinnedTraffic
from exporter.tools import simulator
from exporter.tools.simulator import Reply
from tests.support.process import free_port

ZONE = ZoneInfo("America/Bogota")
SETTLE = 2  # seconds: the simulator publishes a row within 1 s of its date


@dataclass(frozen=True)
class Scenario:
    name: str
    operations: int
    rows_per_answer: int
    window: int  # seconds, the interval of both exporters

    @property
    def rate_per_minute(self) -> float:
        return self.rows_per_answer / self.window * 60


SCENARIOS = (
    Scenario("200x1", 1, 200, 5),
    Scenario("2000x1", 1, 2_000, 5),
    Scenario("20000x1", 1, 20_000, 20),
    Scenario("2000x10", 10, 2_000, 20),
)


class Served:
    """The bodies the simulator served to one token, to parse them again here."""

    def __init__(self, sim: simulator.Simulator, token: str) -> None:
        self.bodies: list[bytes] = []
        self.recording = False
        answer = sim.answer

        def recorded(tenant: str, params: dict[str, list[str]], who: str | None) -> Reply:
            reply = answer(tenant, params, who)
            if self.recording and who == token and reply.status == 200:
                self.bodies.append(reply.body)
            return reply

        setattr(sim, "answer", recorded)  # noqa: B010 (a method replaced on one instance)

    def rows(self) -> int:
        return sum(len(json.loads(b)["data"]) for b in self.bodies)


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _series(port: int, prefix: str) -> int:
    """Series of `prefix` on the page: the naive script's grow with every new raw answer, and
    so does what each of its scrapes costs."""
    return _page(port).count(f"\n{prefix}{{")


def _sum(port: int, prefix: str) -> float:
    text = _page(port)
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


@dataclass
class Process:
    """One exporter under test: its process, its port, what its page counts rows by."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    rows_metric: str
    cpu: float = 0.0
    rows: float = 0.0

    def mark(self) -> None:
        self.cpu, self.rows = cpu_seconds(self.proc.pid), _sum(self.port, self.rows_metric)

    def per_1000(self) -> float:
        """CPU milliseconds per 1,000 rows since `mark()`."""
        rows = _sum(self.port, self.rows_metric) - self.rows
        cpu = cpu_seconds(self.proc.pid) - self.cpu
        return cpu / rows * 1e6 if rows else float("nan")


def _exporter(
    d: Path, name: str, url: str, s: Scenario, lookback: int, module: str = "exporter.cli"
) -> Process:
    """The exporter CLI (or `module`, which runs it) polling the simulator for `s`."""
    ops = "\n".join(
        f"  - {{name: op{i}, base_url: '{url}/op{i}', token: {name}-{i}, timezone: America/Bogota}}"
        for i in range(s.operations)
    )
    config = d / f"{name}.yaml"
    config.write_text(
        f"operations:\n{ops}\n"
        f"polling: {{interval: {s.window}s, settle_delay: {SETTLE}s, lookback: {lookback}s, "
        f"request_spacing: 0s, max_records_per_request: {4 * s.rows_per_answer}}}\n"
        f"state: {{path: {d}/{name}.db}}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
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
    return Process(name, proc, port, "wolkvox_interactions_total")


def _naive(url: str, s: Scenario) -> Process:
    port = free_port()
    ops = [f"--operation=op{i}={url}/op{i},naive-{i}" for i in range(s.operations)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.naive_exporter",
            f"--port={port}",
            f"--interval={s.window}",
            f"--settle={SETTLE}",
            *ops,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Process("naive", proc, port, "naive_interactions_total")


def _wait_counting(processes: list[Process], timeout: float = 300.0) -> None:
    """Until every process has counted rows: at 20,000-row answers on a loaded machine, the
    naive script's first answers came a minute late, and a measurement started before them
    compared a working exporter with an idle one (no rows counted: no ratio)."""
    deadline = time.monotonic() + timeout
    waiting = list(processes)
    while waiting and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            waiting = [p for p in waiting if not _sum(p.port, p.rows_metric)]
        if waiting:
            time.sleep(2.0)
    if waiting:
        raise RuntimeError(f"no rows counted within {timeout:.0f} s: {[p.name for p in waiting]}")


def _wait_up(processes: list[Process], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for p in processes:
        while True:
            try:
                _page(p.port)
                break
            except OSError:
                if time.monotonic() > deadline or p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} did not start") from None
                time.sleep(0.2)


def json_loads_per_1000(bodies: list[bytes], pause: float) -> tuple[float, float]:
    """CPU ms per 1,000 rows of json.loads on the bodies: back to back (best of five passes),
    and each after `pause` seconds idle (three bodies, median)."""
    if not bodies:
        return float("nan"), float("nan")
    rows = sum(len(json.loads(b)["data"]) for b in bodies)
    hot = float("inf")
    for _ in range(5):
        started = time.process_time()
        for body in bodies:
            json.loads(body)
        hot = min(hot, time.process_time() - started)
    cold = []
    for body in bodies[:3]:
        time.sleep(pause)
        started = time.process_time()
        json.loads(body)
        cold.append((time.process_time() - started) / len(json.loads(body)["data"]))
    return hot / rows * 1e6, statistics.median(cold) * 1e6


def run(s: Scenario, seconds: float, profile_to: Path | None = None) -> dict[str, float]:
    tokens = {f"{who}-{i}" for who in ("ours", "lookback", "naive") for i in range(s.operations)}
    tenants: dict[str, simulator.Traffic] = {
        f"op{i}": PinnedTraffic(seed=100 + i, zone=ZONE, rate_per_minute=s.rate_per_minute)
        for i in range(s.operations)
    }
    sim = simulator.Simulator(tenants, tokens, latency=0.0, cap=4 * s.rows_per_answer)
    served = Served(sim, "naive-0")
    srv, url = simulator.serve(sim)
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        processes = [
            _exporter(d, "ours", url, s, lookback=0),
            _exporter(d, "lookback", url, s, lookback=s.window),
            _naive(url, s),
        ]

        def scrape() -> None:
            while not stop.wait(3.0):
                for p in processes:
                    with contextlib.suppress(OSError):
                        _page(p.port)

        try:
            _wait_up(processes)
            threading.Thread(target=scrape, daemon=True).start()
            time.sleep(3 * s.window + SETTLE)  # first polls, warm caches
            _wait_counting(processes)
            naive = processes[-1]
            held = _series(naive.port, naive.rows_metric)  # before the CPU is read
            for p in processes:
                p.mark()
            served.recording = True
            time.sleep(seconds)
            served.recording = False
            result = {p.name: p.per_1000() for p in processes}
            result["naive_series"] = held
            result["naive_series_end"] = _series(naive.port, naive.rows_metric)
            if profile_to is not None:  # afterwards: py-spy costs the process CPU
                out = profile_to / f"{s.name}.txt"
                print(
                    f"{s.name}, exporter CPU by phase: {_phases(profile(processes[0].proc.pid, seconds, out))}"
                )
        finally:
            stop.set()
            for p in processes:
                p.proc.terminate()
            for p in processes:
                try:  # a process busy with a catch-up on a loaded machine ends after it
                    p.proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    print(f"{s.name}: {p.name} did not end within 120 s of SIGTERM; killed")
                    p.proc.kill()
                    p.proc.wait()
            srv.shutdown()
    answers = len(served.bodies)
    result["rows_per_answer"] = served.rows() / answers if answers else float("nan")
    result["hot"], result["idle"] = json_loads_per_1000(served.bodies, s.window)
    return result


def _phases(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "no samples (py-spy missing, or not allowed to attach)"
    return ", ".join(f"{k} {v / total:.0%}" for k, v in counts.most_common())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0, help="measured, per scenario")
    p.add_argument("--only", default="", help="scenario names, comma-separated")
    p.add_argument(
        "--profile", type=Path, help="sample the exporter with py-spy after each measurement"
    )
    args = p.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    print(f"machine: {machine()}")
    print(
        "| answer rows x operations | window | rows per answer | exporter, lookback 0s | naive "
        "| ratio | exporter, look-back one interval | json.loads hot / after the interval idle "
        "| naive's series, start to end |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in SCENARIOS:
        if wanted and s.name not in wanted:
            continue
        # At least six polls measured: a poll is the unit of the fixed costs.
        r = run(s, max(args.seconds, 6 * s.window), args.profile)
        print(
            f"| {s.name} | {s.window} s | {r['rows_per_answer']:,.0f} | {r['ours']:.1f} ms "
            f"| {r['naive']:.1f} ms | **{r['ours'] / r['naive']:.2f}** "
            f"| {r['lookback']:.1f} ms ({r['lookback'] / r['naive']:.2f}) "
            f"| {r['hot']:.1f} / {r['idle']:.1f} ms "
            f"| {r['naive_series']:,.0f} to {r['naive_series_end']:,.0f} |",
            flush=True,
        )
    print(
        "CPU (user + system, /proc) per 1,000 rows counted, each row once whatever the "
        "look-back; ratio: exporter / naive"
    )


if __name__ == "__main__":
    main()
