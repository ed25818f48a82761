"""The installed exporter, as a real process, against the simulated API: counters equal ground truth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import simulator
from tests.conftest import TOKEN, expected_counts, promtool

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_exporter_process_counts_exactly_what_the_api_served(tmp_path: Path):
    start = int(time.time()) + 3
    stop = start + 16
    traffic = simulator.Traffic(
        seed=42,
        rate_per_minute=600,
        daily_curve=False,
        late_fraction=0.15,
        late_max=2.5,
        duplicate_fraction=0.05,
        start=start,
        stop=stop,
    )
    sim = simulator.Simulator({"default": traffic}, {TOKEN}, cap=30, latency=0.01)
    sim_server, sim_url = simulator.serve(sim)
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
operations:
  - name: e2e
    base_url: {sim_url}
    token: ${{E2E_WOLKVOX_TOKEN}}
polling:
  interval: 2s
  settle_delay: 1s
  lookback: 4s
  request_spacing: 20ms
  retry_backoff: 200ms
  max_records_per_request: 30
"""
    )
    log_path = tmp_path / "exporter.log"
    env = {**os.environ, "E2E_WOLKVOX_TOKEN": TOKEN}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter.cli",
                "--config",
                str(cfg),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--log.level",
                "debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.time() + 90
        text = ""
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                text = scrape(metrics_url)
            except OSError:
                continue
            until = samples(text, "wolkvox_collected_until_timestamp_seconds")
            if until and next(iter(until.values())) >= stop + 4 + 2 * 2:
                break
        else:
            pytest.fail(f"exporter never caught up; log:\n{log_path.read_text()}")

        counted = Counter(
            {
                (lbl["channel"], lbl["rp_id"], lbl["routing_answer"]): int(v)
                for lbl, v in (
                    (dict(k), v) for k, v in samples(text, "wolkvox_interactions_total").items()
                )
                if v
            }
        )
        truth = expected_counts(traffic.rows(start, stop - 1))
        assert sum(truth.values()) > 100
        assert counted == truth

        requests = {
            dict(k)["outcome"]: v for k, v in samples(text, "wolkvox_api_requests_total").items()
        }
        polls = (stop + 8 - start) / 2
        assert requests["success"] > polls  # answers at the cap were split and re-read
        assert samples(text, "wolkvox_records_duplicate_total")[(("operation", "e2e"),)] > 0
        assert samples(text, "wolkvox_up")[(("operation", "e2e"),)] == 1
        assert sim.stats.violations == 0
        check = subprocess.run(
            [promtool(), "check", "metrics"], input=text.encode(), capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        sim_server.shutdown()
        sim_server.server_close()
    assert code == 0
    log_text = log_path.read_text()
    assert "poll done" in log_text
    assert TOKEN not in log_text and "Traceback" not in log_text
    for row in traffic.rows(start, stop - 1):
        assert row.record["customer_email"] not in log_text


def test_demo_serves_live_metrics_without_config_or_token():
    """The README's first command: `wolkvox-exporter --demo` shows live metrics on its own."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.cli",
            "--demo",
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        up: dict[tuple[tuple[str, str], ...], float] = {}
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                    up = samples(scrape(f"http://127.0.0.1:{port}/metrics"), "wolkvox_up")
                    break
            except OSError:
                continue
        assert up == {(("operation", "demo-bogota"),): 1.0, (("operation", "demo-mexico"),): 1.0}
        assert "demo-bogota" in scrape(f"http://127.0.0.1:{port}/")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
