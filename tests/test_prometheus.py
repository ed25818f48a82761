"""A real Prometheus (Debian's package) scrapes the real exporter and evaluates the shipped rules."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import required_binary
from tests.process import Exporter, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parent.parent


def api(port: int, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}?{query}", timeout=5) as r:
        return json.loads(r.read())["data"]


def test_every_recording_rule_returns_data_from_a_real_prometheus(tmp_path: Path):
    exporter = Exporter(tmp_path, ["--demo"]).start()
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [
                    str(ROOT / "prometheus" / "rules.yaml"),
                    str(ROOT / "prometheus" / "alerts.yaml"),
                ],
                "scrape_configs": [
                    {
                        "job_name": "wolkvox",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
        )
    )
    with (tmp_path / "prometheus.log").open("w") as log:
        prom = subprocess.Popen(
            [
                required_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    records = [
        r["record"]
        for path in ("rules.yaml",)
        for g in yaml.safe_load((ROOT / "prometheus" / path).read_text())["groups"]
        for r in g["rules"]
    ]
    try:
        missing = set(records)
        deadline = time.time() + 120
        while missing and time.time() < deadline:
            time.sleep(1)
            for record in list(missing):
                try:
                    if api(prom_port, "query", query=record)["result"]:
                        missing.discard(record)
                except OSError:
                    break
        assert not missing, (tmp_path / "prometheus.log").read_text()[-2000:]
        # Both demo operations come through, per channel, with a positive rate somewhere.
        rates = api(prom_port, "query", query="operation_channel:wolkvox_interactions:rate15m")[
            "result"
        ]
        assert {r["metric"]["operation"] for r in rates} == {"demo-bogota", "demo-mexico"}
        # Every rule evaluates without error, and the exporter is healthy: no alert fires.
        groups = api(prom_port, "rules")["groups"]
        assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
        firing = [a for a in api(prom_port, "alerts")["alerts"] if a["state"] == "firing"]
        assert firing == []
    finally:
        prom.terminate()
        prom.wait(timeout=15)
        exporter.stop()
