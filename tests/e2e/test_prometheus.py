"""A real Prometheus (Debian's package) scrapes the real exporter (`--demo`), evaluates the
shipped rules, and answers every query of the shipped dashboards."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.harness import required_binary
from tests.support.process import Exporter, free_port
from tests.unit.test_dashboards import dashboards, panel_queries, variable_queries

ROOT = Path(__file__).parent.parent.parent


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
    operations = {"demo-bogota", "demo-mexico"}
    try:
        # Every recording rule returns data for both demo operations.
        missing = set(records)
        deadline = time.time() + 120
        while missing and time.time() < deadline:
            time.sleep(1)
            for record in list(missing):
                try:
                    result = api(prom_port, "query", query=record)["result"]
                except OSError:
                    break
                if {r["metric"].get("operation") for r in result} >= operations:
                    missing.discard(record)
        assert not missing, (tmp_path / "prometheus.log").read_text()[-2000:]
        # Every rule evaluates without error, and the exporter is healthy: no alert fires.
        groups = api(prom_port, "rules")["groups"]
        assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
        firing = [a for a in api(prom_port, "alerts")["alerts"] if a["state"] == "firing"]
        assert firing == []
        check_dashboards(prom_port)
    finally:
        prom.terminate()
        prom.wait(timeout=15)
        exporter.stop()


def check_dashboards(port: int, timeout: float = 90) -> None:
    """Every panel query and every variable of every dashboard returns data, with the variables
    set as Grafana sets them for "All". Counters move once per demo poll (15s), so a panel that
    needs an increase may need a few polls: each query is retried until the deadline."""
    pending = [
        (f"{name}: {title}: {expr}", expr)
        for name, board in dashboards().items()
        for title, expr in panel_queries(board)
    ] + [
        (f"{name}: variable {variable}: {selector}", f"group by ({label}) ({selector})")
        for name, board in dashboards().items()
        for variable, selector, label in variable_queries(board)
    ]
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        pending = [
            (what, expr) for what, expr in pending if not api(port, "query", query=expr)["result"]
        ]
        if pending:
            time.sleep(2)
    assert not pending, "\n".join(what for what, _ in pending)
