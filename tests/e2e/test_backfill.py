"""Backfill: a simulated day into OpenMetrics, TSDB blocks and a real Prometheus; resuming;
joining up with the live exporter; and `check --connect`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.api import windowing
from exporter.settings.config import Config
from exporter.state.store import StateStore
from exporter.tools.backfill.replay import Backfill, write_state
from exporter.tools.backfill.request import BackfillError, Request
from exporter.tools.simulator import SELECT_BY, Traffic
from tests.e2e.test_prometheus import api
from tests.support.harness import (
    TOKEN,
    Clock,
    assert_conversations,
    expected_counts,
    expected_kpis,
    make_config,
    make_poller,
    required_binary,
)
from tests.support.process import free_port

ZONE = ZoneInfo("America/Bogota")


def local_day(days_ago: int) -> tuple[str, str, int, int]:
    """A whole local day some days back: its dates as text and as epoch seconds."""
    day = datetime.now(ZONE).date() - timedelta(days=days_ago)
    start = datetime(day.year, day.month, day.day, tzinfo=ZONE)
    end = start + timedelta(days=1)
    return (
        start.strftime("%Y-%m-%d"),
        end.strftime("%Y-%m-%d"),
        int(start.timestamp()),
        int(end.timestamp()),
    )


def write_config(path: Path, url: str, cap: int = 400, state: Path | None = None) -> Path:
    path.write_text(
        f"""
operations:
  - {{name: bogota, base_url: "{url}", token: "{TOKEN}", timezone: America/Bogota}}
polling:
  request_spacing: 0s
  retry_backoff: 10ms
  max_records_per_request: {cap}
"""
        + (f"state:\n  path: {state}\n" if state else "")
    )
    return path


LABELS = ("channel", "rp_id", "routing_answer", "outcome")


def _conversations(query: Callable[..., dict[tuple[str, ...], float]]) -> SimpleNamespace:
    """The conversation figures as Prometheus has them, keyed like the ground truth."""
    out: dict[str, dict[Any, float]] = {}
    for field, name, label in (
        ("sessions_ended", "wolkvox_sessions_ended_total", "result"),
        ("sessions_recontact", "wolkvox_sessions_recontact_total", "previous"),
    ):
        out[field] = dict(query(f"sum by (channel, {label}) ({name})", ("channel", label)))
    for field, name in (
        ("sessions_with_fallback", "wolkvox_sessions_with_fallback_total"),
        ("session_rows_after_end", "wolkvox_session_rows_after_end_total"),
        ("sessions_open", "wolkvox_sessions_open"),
    ):
        out[field] = {k[0]: v for k, v in query(f"sum by (channel) ({name})", ("channel",)).items()}
    for field, name in (
        ("session_turns", "wolkvox_session_turns"),
        ("session_duration", "wolkvox_session_duration_seconds"),
        ("session_time_to_transfer", "wolkvox_session_time_to_transfer_seconds"),
    ):
        edges = query(f"sum by (channel, le) ({name}_bucket)", ("channel", "le"))
        buckets: dict[Any, float] = {}
        for channel in {ch for ch, _ in edges}:
            below = 0.0
            mine = sorted((float(le), v) for (ch, le), v in edges.items() if ch == channel)
            for i, (_, value) in enumerate(mine):
                buckets[(channel, i)] = value - below
                below = value
        out[field] = buckets
        sums = query(f"sum by (channel) ({name}_sum)", ("channel",))
        out[f"{field}_sum"] = {k[0]: v for k, v in sums.items()}
    return SimpleNamespace(**out)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_a_backfilled_day_in_a_real_prometheus_equals_the_ground_truth(
    tmp_path, sim_factory, select_by
):
    """By close time, rows come back dated before the chunk asked for: they count in its first
    window, so the file stays in time order (promtool refuses it otherwise)."""
    first_text, end_text, first, end = local_day(2)
    # Every session begins and ends within the day (a timeout and the latest message after
    # it), so the day's conversation figures are those of its rows.
    traffic = Traffic(
        seed=21,
        rate_per_minute=20,
        late_fraction=0.1,
        duplicate_fraction=0.03,
        select_by=select_by,
        start=first,
        stop=end - 3 * 3600,
    )
    sim, url = sim_factory(traffic, time.time, cap=400)
    cfg = write_config(tmp_path / "config.yaml", url)
    out = tmp_path / "day.om"
    run = cli(
        "backfill",
        "--config",
        str(cfg),
        "--from",
        first_text,
        "--to",
        end_text,
        "--output",
        str(out),
        "--label",
        "job=wolkvox",
    )
    assert run.returncode == 0, run.stderr
    assert "288 windows" in run.stdout
    text = out.read_text()
    assert text.endswith("# EOF\n")
    assert sim.stats.violations == 0
    # One call per hour of the day, more only where an hour held more than the cap.
    assert 24 <= sim.stats.requests < 24 * 4
    rows = traffic.rows(first, end - 1)
    assert len(rows) > 400 * 24 // 2  # some hours did need splitting

    blocks = tmp_path / "data"
    made = subprocess.run(
        [
            required_binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(out),
            str(blocks),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    with (tmp_path / "prometheus.log").open("w") as log:
        prom = subprocess.Popen(
            [
                required_binary("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={blocks}",
                "--storage.tsdb.retention.time=30d",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def query(expr: str, keys: tuple[str, ...] = LABELS) -> dict[tuple[str, ...], float]:
            deadline = time.time() + 30
            while True:
                try:
                    result = api(port, "query", query=expr, time=str(end))["result"]
                    break
                except OSError:
                    assert time.time() < deadline, (tmp_path / "prometheus.log").read_text()
                    time.sleep(0.3)
            return {
                tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result
            }

        got = query(
            'sum by (channel, rp_id, routing_answer) (wolkvox_interactions_total{job="wolkvox"})'
        )
        truth = expected_counts(rows)
        assert {k[:3]: int(v) for k, v in got.items()} == dict(truth)
        kpis = expected_kpis(rows)
        sessions = query("sum by (channel) (wolkvox_sessions_total)")
        assert {k[0]: int(v) for k, v in sessions.items()} == dict(kpis.sessions)
        transferred = query("sum by (channel) (wolkvox_sessions_transferred_total)")
        assert {k[0]: int(v) for k, v in transferred.items() if v} == dict(kpis.transferred)
        assert_conversations(_conversations(query), rows, 3600, 86400)
        # Each series starts at 0, so increase() over the day counts the first window too.
        increase = query(f"sum(increase(wolkvox_interactions_total[{end - first}s]))")
        assert abs(sum(increase.values()) - len(rows)) < 0.01 * len(rows)
        # Samples at the polling interval, stamped at window ends, dated by the records.
        steps = query(
            f'count_over_time(wolkvox_sessions_total{{channel="whatsapp"}}[{end - first}s])'
        )
        assert set(steps.values()) <= {288.0, 289.0}
    finally:
        prom.terminate()
        prom.wait(timeout=15)


def test_an_interrupted_backfill_resumes_and_writes_the_same_file(tmp_path, sim_factory):
    first_text, end_text, _, _ = local_day(3)
    traffic = Traffic(seed=5, rate_per_minute=10, duplicate_fraction=0.05)
    sim, url = sim_factory(traffic, time.time, cap=300)
    cfg = Config.model_validate(
        {
            "operations": [{"name": "bogota", "base_url": url, "token": TOKEN}],
            "polling": {"request_spacing": "0s", "max_records_per_request": 300},
        }
    )
    whole = Backfill(
        Request(cfg, first_text, end_text, tmp_path / "whole.om", cfg.per_operation(), 3600)
    )
    whole.run()
    used = sim.stats.requests

    # The quota runs out a third of the way: the run stops with a clear error, then resumes.
    sim.token_limit = sim.used_today(TOKEN) + used // 3
    request = Request(cfg, first_text, end_text, tmp_path / "part.om", cfg.per_operation(), 3600)
    with pytest.raises(BackfillError, match="quota is used up; run the same command again"):
        Backfill(request).run()
    assert not (tmp_path / "part.om").exists()
    assert (tmp_path / "part.om.progress").exists()
    # Pretend the previous run died after writing samples it never recorded as saved.
    with open(tmp_path / "part.om.parts" / "wolkvox_interactions.om", "a") as f:
        f.write('wolkvox_interactions_total{operation="bogota"} 99 1\n')
    sim.token_limit = 10**9
    before = sim.stats.requests
    again = Backfill(request).run()
    assert again.resumed
    assert (tmp_path / "part.om").read_text() == (tmp_path / "whole.om").read_text()
    assert sim.stats.requests - before < used  # it did not start over
    assert not (tmp_path / "part.om.progress").exists()
    assert not (tmp_path / "part.om.parts").exists()
    assert sim.stats.violations == 0


def test_ctrl_c_then_the_same_command_finishes_the_same_file(tmp_path, sim_factory):
    first_text, end_text, _, _ = local_day(4)
    traffic = Traffic(seed=6, rate_per_minute=10)
    _, url = sim_factory(traffic, time.time, cap=300, latency=0.1)
    cfg = write_config(tmp_path / "config.yaml", url, cap=300)
    args = ["backfill", "--config", str(cfg), "--from", first_text, "--to", end_text]
    whole = cli(*args, "--output", str(tmp_path / "whole.om"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "part.om"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", *args, "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = out.with_name("part.om.progress")
    deadline = time.time() + 60
    while not progress.exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not out.exists()

    again = cli(*args, "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout
    assert out.read_text() == (tmp_path / "whole.om").read_text()


def test_backfill_refuses_what_would_be_wrong(tmp_path, sim_factory):
    _, url = sim_factory(Traffic(seed=1), time.time)
    cfg = Config.model_validate(
        {"operations": [{"name": "bogota", "base_url": url, "token": TOKEN}]}
    )
    now = datetime.now(ZONE)

    def attempt(start: str, end: str, output: str = "x.om") -> None:
        Backfill(Request(cfg, start, end, tmp_path / output, cfg.per_operation(), 3600)).run()

    soon = now + timedelta(minutes=5)
    soon = soon.replace(minute=soon.minute - soon.minute % 5, second=0)
    with pytest.raises(BackfillError, match="reaches into the last settle_delay"):
        attempt(
            (soon - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:00"),
            soon.strftime("%Y-%m-%dT%H:%M:00"),
        )
    with pytest.raises(BackfillError, match="polling-interval boundary"):
        attempt("2026-11-01T00:00:07", "2026-11-02")
    with pytest.raises(BackfillError, match="must be before"):
        attempt("2026-11-02", "2026-11-01")
    with pytest.raises(BackfillError, match="is not a date"):
        attempt("01/11/2026", "2026-11-02")
    (tmp_path / "exists.om").write_text("precious\n")
    with pytest.raises(BackfillError, match="exists; remove it"):
        attempt("2026-11-01", "2026-11-01T01:00:00", "exists.om")
    assert (tmp_path / "exists.om").read_text() == "precious\n"
    assert not (tmp_path / "exists.om.parts").exists()  # a refused run leaves nothing behind
    # A progress file from other arguments is not silently mixed in.
    attempt("2026-11-01", "2026-11-01T01:00:00", "a.om")
    (tmp_path / "b.om.progress").write_bytes(b"\x92\x01")
    with pytest.raises(BackfillError, match="damaged"):
        attempt("2026-11-01", "2026-11-01T01:00:00", "b.om")
    # Nor one of the JSON format an earlier release wrote: the user is told which it is.
    (tmp_path / "b.om.progress").write_bytes(b'{"version": 1}')
    with pytest.raises(BackfillError, match="earlier release"):
        attempt("2026-11-01", "2026-11-01T01:00:00", "b.om")
    bad = cli(
        "backfill", "--config", "/nonexistent.yaml", "--from", "x", "--to", "y", "--output", "o"
    )
    assert bad.returncode == 1 and "cannot read config file" in bad.stderr


def test_write_state_joins_the_backfill_up_with_the_live_exporter(tmp_path, sim_factory):
    clock = Clock(1_790_000_100 + 86400 * 3 + 10 * 3600)  # the afternoon: regulars come back
    end = int(clock.now - clock.now % 300 - 3600)
    start = end - 6 * 3600
    # Conversations open at the seam go on in the live exporter; traffic stops so that all end.
    traffic = Traffic(
        seed=8, rate_per_minute=30, late_fraction=0.1, late_max=200, start=start, stop=end + 1800
    )
    _, url = sim_factory(traffic, clock)
    state = tmp_path / "state.json"
    kpis = {"session_timeout": "10m", "recontact_window": "3h"}
    cfg = make_config(url, state={"path": str(state)}, kpis=kpis)
    op = cfg.operations[0]
    fmt = "%Y-%m-%dT%H:%M:%S"
    request = Request(
        cfg,
        datetime.fromtimestamp(start, op.zone).strftime(fmt),
        datetime.fromtimestamp(end, op.zone).strftime(fmt),
        tmp_path / "history.om",
        cfg.per_operation(),
        3600,
        secret=StateStore(state).secret(),
    )
    job = Backfill(request, now=clock)
    summary = job.run()
    write_state(cfg, summary.tallies, summary.ranges)
    with pytest.raises(BackfillError, match="already counts main"):
        write_state(cfg, summary.tallies, summary.ranges)

    saved = StateStore(state).load()["main"]
    assert saved.cursor == end
    poller = make_poller(cfg, clock, store=StateStore(state), saved=saved)
    assert poller.snapshot().counts.interactions == dict(
        expected_counts(traffic.rows(start, end - 1))
    )
    assert sum(poller.snapshot().counts.sessions_open.values()) > 0
    for _ in range(30):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
    snap = poller.snapshot()
    assert snap.collected_until is not None
    # One continuous count from the backfill's start: nothing lost at the seam, nothing twice.
    rows = traffic.rows(start, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    assert snap.counts.sessions_total == dict(expected_kpis(rows).sessions)
    assert_conversations(snap.counts, rows, 600, 3 * 3600)


def test_check_connect_reports_reachability_token_and_quota(tmp_path, sim_factory):
    sim, url = sim_factory(Traffic(seed=1), time.time)
    good = write_config(tmp_path / "good.yaml", url)
    run = cli("check", "--config", str(good), "--connect")
    assert run.returncode == 0, run.stderr
    assert "bogota: reachable, token valid" in run.stdout
    # The calls of the diagnosis and token_info itself.
    assert re.search(r"quota used \d+/100000 today", run.stdout)
    bad_token = tmp_path / "bad.yaml"
    bad_token.write_text(good.read_text().replace(TOKEN, "wrong-token-value"))
    run = cli("check", "--config", str(bad_token), "--connect")
    assert run.returncode == 1 and "token INVALID" in run.stdout
    assert "wrong-token-value" not in run.stdout + run.stderr
    down = write_config(tmp_path / "down.yaml", f"http://127.0.0.1:{free_port()}")
    run = cli("check", "--config", str(down), "--connect")
    assert run.returncode == 1 and "NOT reachable" in run.stdout
    assert sim.stats.violations == 0


def test_the_simulator_enforces_the_daily_quota_and_reports_it(sim_factory):
    import requests

    _, url = sim_factory(Traffic(seed=1), time.time, token_limit=3)
    headers = {"wolkvox-token": TOKEN}
    info = requests.get(f"{url}/api/v2/information.php?api=token_info", headers=headers, timeout=5)
    assert info.json()["data"][0]["token_use_today"] == "1"  # the documented shape
    assert info.json()["data"][0]["token_limit"] == "3"
    params = {"api": "diagram_9", "date_ini": "20261101000000", "date_end": "20261101000100"}
    codes = [
        requests.get(
            f"{url}/api/v2/reports_manager.php", params=params, headers=headers, timeout=5
        ).status_code
        for _ in range(3)
    ]
    assert codes[:2] != [403, 403] and codes[2] == 403
    assert Counter(codes)[403] == 1


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(caplog):
    import fcntl
    import io
    import os
    import pty
    import select
    import struct
    import termios

    from exporter.tools.backfill.progress import Progress

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(slave, "w") as terminal:
        bar = Progress(288, terminal)
        bar.advance(100, 0, skipped=True)  # resumed: done before this run
        bar.advance(44, 5000)
        bar.close()
    chunks = []
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunks.append(os.read(master, 65536))
        except OSError:  # the terminal side is closed and drained
            break
    drawn = b"".join(chunks).decode(errors="replace")
    os.close(master)
    assert "144/288" in drawn and "records=5000" in drawn and "<" in drawn  # elapsed<remaining

    plain = io.StringIO()
    with caplog.at_level("INFO"):
        lines = Progress(288, plain)
        lines.advance(288, 9000)
        lines.close()
    assert plain.getvalue() == ""  # no control characters in a log file
    assert "backfill progress" in caplog.text and "windows=288/288" in caplog.text
