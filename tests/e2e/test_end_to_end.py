"""The exporter as a real process against the simulated API: counters equal ground truth."""

from __future__ import annotations

import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from exporter.tools import simulator
from tests.support.harness import (
    TOKEN,
    assert_conversations,
    expected_counts,
    promtool,
    within_the_cap,
)
from tests.support.process import (
    Exporter,
    assert_private,
    by_label,
    conversations,
    interactions,
    parse,
)

# Sessions end 3 s after their last message, longer than the simulator's gaps at think=0.02.
KPIS = {"session_timeout": "3s", "recontact_window": "1m"}


@pytest.mark.parametrize("select_by", simulator.SELECT_BY)
def test_exporter_process_counts_exactly_what_the_api_served(live_exporter, select_by: str):
    """In both ways the API may select rows: by their date, or by when their session closed
    (then rows come back dated before the range asked for, some before the look-back)."""
    # Small enough that answers come back at the cap and are split; by close time a session's
    # rows (and their copies) share one second, which must stay under the cap.
    cap = 30 if select_by == "date" else 60
    traffic = within_the_cap(
        lambda begin: simulator.Traffic(
            seed=42,
            rate_per_minute=600,
            daily_curve=False,
            late_fraction=0.15,
            late_max=2.5,
            duplicate_fraction=0.05,
            start=begin,
            stop=begin + 16,
            select_by=select_by,
            close_delay=7,
            think=0.02,  # conversations of seconds: 1-2 s between messages
        ),
        int(time.time()) + 3,
        cap,
    )
    start, stop = traffic.start, traffic.stop
    assert start is not None and stop is not None
    polling = {
        "interval": "2s",
        "settle_delay": "1s",
        "lookback": "4s",
        "request_spacing": "20ms",
        "retry_backoff": "200ms",
    }
    live = live_exporter(traffic, name="e2e", cap=cap, polling=polling, kpis=KPIS)
    sim, exporter = live.sim, live.exporter.start()
    try:
        # Every session ended: collected for good (past the look-back) a timeout after it.
        text = exporter.wait_collected(traffic.quiet_after + 4 + 3 + 2 * 2)
        samples = parse(text)
        truth = expected_counts(traffic.all_rows())
        assert sum(truth.values()) > 100
        assert interactions(samples) == truth
        talks = conversations(samples, "e2e")
        assert_conversations(talks, traffic.all_rows(), 3, 60, hours=False)
        outside = samples["wolkvox_records_outside_range_total"][(("operation", "e2e"),)]
        assert (outside > 0) == (select_by == "close")
        newest = samples["wolkvox_newest_record_timestamp_seconds"][(("operation", "e2e"),)]
        assert newest == max(r.date for r in traffic.all_rows())
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
    assert ("counted rows dated outside the requested range" in log) == (select_by == "close")
    assert_private(log, TOKEN, traffic.all_rows())


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
