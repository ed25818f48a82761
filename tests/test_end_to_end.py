"""The exporter as a real process against the simulated API: counters equal ground truth."""

from __future__ import annotations

import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from exporter import simulator
from tests.conftest import TOKEN, expected_counts, promtool
from tests.process import Exporter, assert_private, by_label, interactions, parse

pytestmark = pytest.mark.e2e


def test_exporter_process_counts_exactly_what_the_api_served(tmp_path: Path, sim_factory):
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
    sim, sim_url = sim_factory(traffic, time.time, cap=30, latency=0.01)
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
    exporter = Exporter(
        tmp_path, ["--config", str(cfg), "--log.level", "debug"], {"E2E_WOLKVOX_TOKEN": TOKEN}
    ).start()
    try:
        text = exporter.wait_collected(stop + 4 + 2 * 2)
        samples = parse(text)
        truth = expected_counts(traffic.rows(start, stop - 1))
        assert sum(truth.values()) > 100
        assert interactions(samples) == truth
        polls = (stop + 8 - start) / 2
        # Answers at the cap were split and re-read.
        assert by_label(samples, "wolkvox_api_requests_total", "outcome")["success"] > polls
        assert samples["wolkvox_records_duplicate_total"][(("operation", "e2e"),)] > 0
        assert samples["wolkvox_up"][(("operation", "e2e"),)] == 1
        assert sim.stats.violations == 0
        check = subprocess.run(
            [promtool(), "check", "metrics"], input=text.encode(), capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        code = exporter.stop()
    assert code == 0
    log = exporter.log()
    assert "poll done" in log and "Traceback" not in log
    assert_private(log, TOKEN, traffic.rows(start, stop - 1))


def test_demo_serves_live_metrics_without_config_or_token(tmp_path: Path):
    """The README's first command: `wolkvox-exporter --demo` shows live metrics on its own."""
    exporter = Exporter(tmp_path, ["--demo"]).start()
    try:
        deadline = time.time() + 30
        up: dict[tuple[tuple[str, str], ...], float] = {}
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                exporter.get("/-/ready")
            except (OSError, urllib.error.HTTPError):
                continue
            up = exporter.metrics()["wolkvox_up"]
            break
        assert up == {(("operation", "demo-bogota"),): 1.0, (("operation", "demo-mexico"),): 1.0}
        assert "demo-bogota" in exporter.get("/")
    finally:
        code = exporter.stop()
    assert code == 0, exporter.log()
