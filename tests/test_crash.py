"""Kill the real exporter at random moments of its polling; in the end every counter is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import simulator
from exporter.state import StateStore
from tests.conftest import TOKEN, expected_counts
from tests.test_end_to_end import free_port

pytestmark = pytest.mark.e2e


def metrics(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def interactions(
    m: dict[str, dict[tuple[tuple[str, str], ...], float]],
) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for key, value in m.get("wolkvox_interactions_total", {}).items():
        labels = dict(key)
        if value:
            out[(labels["channel"], labels["rp_id"], labels["routing_answer"])] = int(value)
    return out


def test_sigkill_at_random_moments_neither_loses_nor_doubles(tmp_path: Path):
    rng = random.Random(20261129)
    start = int(time.time()) + 2
    stop = start + 24
    traffic = simulator.Traffic(
        seed=77,
        rate_per_minute=600,
        daily_curve=False,
        late_fraction=0.15,
        late_max=1.5,
        duplicate_fraction=0.05,
        start=start,
        stop=stop,
    )
    sim = simulator.Simulator({"default": traffic}, {TOKEN}, cap=30, latency=0.01)
    sim_server, sim_url = simulator.serve(sim)
    state = tmp_path / "state.json"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
operations:
  - {{name: crashy, base_url: "{sim_url}", token: "${{CRASH_TOKEN}}"}}
polling:
  interval: 1s
  settle_delay: 1s
  lookback: 3s
  request_spacing: 10ms
  retry_backoff: 100ms
  max_records_per_request: 30
state:
  path: {state}
"""
    )
    env = {**os.environ, "CRASH_TOKEN": TOKEN}
    port = free_port()
    log_path = tmp_path / "exporter.log"

    def launch() -> subprocess.Popen[bytes]:
        with log_path.open("a") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter.cli",
                    "--config",
                    str(cfg),
                    "--web.listen-address",
                    f"127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    last_seen: Counter[tuple[str, str, str]] = Counter()
    kills = 0
    try:
        while time.time() < stop - 1:
            proc = launch()
            deadline = time.time() + rng.uniform(0.4, 2.5)
            while time.time() < deadline:
                time.sleep(0.05)
                try:
                    seen = interactions(metrics(port))
                except OSError:
                    continue
                # A counter a scrape has shown never goes down, not even across a SIGKILL.
                assert all(seen[k] >= n for k, n in last_seen.items())
                last_seen = seen
            proc.kill()
            proc.wait()
            kills += 1
            time.sleep(rng.uniform(0, 1.0))  # down for a while: the restart catches up
        assert kills >= 5

        proc = launch()
        final: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                final = metrics(port)
            except OSError:
                continue
            until = final.get("wolkvox_collected_until_timestamp_seconds", {})
            if until and next(iter(until.values())) >= stop + 3 + 2:
                break
        else:
            pytest.fail("exporter never caught up:\n" + log_path.read_text()[-3000:])
        truth = expected_counts(traffic.rows(start, stop - 1))
        assert sum(truth.values()) > 150
        assert interactions(final) == truth
        assert sim.stats.violations == 0

        # SIGTERM: exit 0 with the state saved.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        saved = StateStore(state).load()["crashy"]
        assert sum(n for *_k, n in saved.interactions) == sum(truth.values())
    finally:
        if proc.poll() is None:
            proc.kill()
        sim_server.shutdown()
        sim_server.server_close()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text
    assert TOKEN not in log_text
