"""Running the exporter as a real process on loopback, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.tools.simulator import Row

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
PRIVATE_FIELDS = (
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_id",
    "session_id",
    "conn_id",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    """Exposition text as {sample name: {sorted label pairs: value}}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def interactions(samples: Samples, operation: str | None = None) -> Counter[tuple[str, str, str]]:
    """wolkvox_interactions_total keyed like the ground truth (channel, rp_id, routing_answer),
    of one operation if named."""
    out: Counter[tuple[str, str, str]] = Counter()
    for key, value in samples.get("wolkvox_interactions_total", {}).items():
        labels = dict(key)
        if value and operation in (None, labels["operation"]):
            out[(labels["channel"], labels["rp_id"], labels["routing_answer"])] = int(value)
    return out


# The conversation counters and histograms as /metrics shows them: sample name, the labels that
# key the ground truth after `operation`.
_TALK_COUNTERS = {
    "sessions_ended": ("wolkvox_sessions_ended_total", ("channel", "result")),
    "sessions_recontact": ("wolkvox_sessions_recontact_total", ("channel", "previous")),
    "sessions_with_fallback": ("wolkvox_sessions_with_fallback_total", ("channel",)),
    "session_rows_after_end": ("wolkvox_session_rows_after_end_total", ("channel",)),
}
_TALK_HISTOGRAMS = {
    "session_turns": "wolkvox_session_turns",
    "session_duration": "wolkvox_session_duration_seconds",
    "session_time_to_transfer": "wolkvox_session_time_to_transfer_seconds",
}


def conversations(samples: Samples, operation: str) -> SimpleNamespace:
    """The conversation figures of one operation keyed like the ground truth (simulator.Talks):
    counters by their labels, histograms by (channel, bucket index) and their sums."""
    out: dict[str, dict[Any, float]] = {}
    for field, (name, keys) in _TALK_COUNTERS.items():
        values = out[field] = {}
        for key, value in samples.get(name, {}).items():
            labels = dict(key)
            if labels["operation"] == operation:
                values[tuple(labels[k] for k in keys) if len(keys) > 1 else labels[keys[0]]] = value
    for field, name in _TALK_HISTOGRAMS.items():
        cumulative: dict[str, list[tuple[float, float]]] = {}
        for key, value in samples.get(f"{name}_bucket", {}).items():
            labels = dict(key)
            if labels["operation"] == operation:
                cumulative.setdefault(labels["channel"], []).append((float(labels["le"]), value))
        buckets = out[field] = {}
        for channel, edges in cumulative.items():
            below = 0.0
            for i, (_, value) in enumerate(sorted(edges)):
                buckets[(channel, i)] = value - below
                below = value
        out[f"{field}_sum"] = {
            dict(k)["channel"]: v
            for k, v in samples.get(f"{name}_sum", {}).items()
            if dict(k)["operation"] == operation
        }
    out["sessions_open"] = {
        dict(k)["channel"]: v
        for k, v in samples.get("wolkvox_sessions_open", {}).items()
        if dict(k)["operation"] == operation
    }
    return SimpleNamespace(**out)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in samples.get(name, {}).items()}


def assert_private(text: str, token: str, rows: Iterable[Row]) -> None:
    """No token and no customer field of any served row appears in `text`."""
    assert token not in text
    for row in rows:
        for field in PRIVATE_FIELDS:
            value = str(row.record.get(field, ""))
            if len(value) > 3:  # "0" (no conn id) is not personal and appears everywhere
                assert value not in text, field


class Exporter:
    """`python -m exporter.cli` with the given arguments, on a free port, logging to a file."""

    def __init__(
        self, tmp_path: Path, args: Sequence[str], env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.args = [*args, "--web.listen-address", f"127.0.0.1:{self.port}"]
        self.env = {**os.environ, **(env or {})}
        self.log_path = tmp_path / "exporter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Exporter:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter.cli", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def get(self, path: str = "/metrics") -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    def metrics(self) -> Samples:
        return parse(self.get())

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_first_poll(self, traffic_start: int, timeout: float = 60) -> None:
        """Wait until the first poll is published, and check that it read from no later than
        `traffic_start`: rows before the first window are history (for backfill), so a test
        of exact counts must not let traffic begin before it."""
        first = self.wait_collected(0, timeout=timeout)
        for origin_end in parse(first)["wolkvox_collected_until_timestamp_seconds"].values():
            assert origin_end - 1 <= traffic_start, "the exporter started after the traffic began"

    def wait_collected(self, until: int, timeout: float = 90) -> str:
        """Scrape until every operation has collected up to `until`; returns that exposition."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                text = self.get()
            except OSError:
                continue
            collected = parse(text).get("wolkvox_collected_until_timestamp_seconds", {})
            if collected and min(collected.values()) >= until:
                return text
        pytest.fail("exporter never caught up; log tail:\n" + self.log()[-3000:])
