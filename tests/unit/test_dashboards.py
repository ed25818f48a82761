"""The shipped Grafana dashboards and provisioning: built from grafana/build.py, provisionable
as files, and reading only metrics the exporter (or the shipped rules) provide."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.promql import metric_names, substitute

ROOT = Path(__file__).parent.parent.parent
GRAFANA = ROOT / "grafana"


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with "All" variables substituted) for every panel target."""
    return [
        (p["title"], substitute(t["expr"])) for p in board["panels"] for t in p.get("targets", [])
    ]


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, selector, label) of every label_values() variable, variables substituted."""
    out = []
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["definition"])
            assert m, v["definition"]
            out.append((v["name"], substitute(m.group(1)), m.group(2)))
    return out


def test_committed_json_is_what_the_builder_writes():
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    rendered = build.render()
    on_disk = {
        p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")
    }
    assert on_disk == rendered, "run: python3 prometheus/generate.py"


def test_dashboards_have_fixed_uids_and_a_datasource_variable():
    boards = dashboards()
    assert set(boards) == {
        "overview.json",
        "conversations.json",
        "routing-point.json",
        "exporter-health.json",
    }
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        assert re.fullmatch(r"wolkvox-[a-z-]+", board["uid"]), name
        assert "__inputs" not in board, "file provisioning cannot fill __inputs"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert "operation" in variables
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["description"], panel["title"]
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == "${datasource}", panel["title"]
    assert {"channel"} <= {v["name"] for v in boards["overview.json"]["templating"]["list"]}
    assert {"channel"} <= {v["name"] for v in boards["conversations.json"]["templating"]["list"]}
    assert {"channel", "rp_id"} <= {
        v["name"] for v in boards["routing-point.json"]["templating"]["list"]
    }


def test_alert_dashboard_links_point_at_shipped_dashboards():
    uids = {b["uid"] for b in dashboards().values()}
    alerts = [
        r
        for g in yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text())["groups"]
        for r in g["rules"]
    ]
    for alert in alerts:
        url = alert["annotations"]["dashboard_url"]
        m = re.match(r"^/d/([\w-]+)(\?|$)", url)
        assert m and m.group(1) in uids, (alert["alert"], url)


def test_provisioning_points_at_the_dashboards_and_a_prometheus_datasource():
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "wolkvox.yaml").read_text())
    provider = dash["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert sources["datasources"][0]["type"] == "prometheus"


def test_dashboards_read_only_metrics_that_exist(exposed_names):
    """A renamed metric must break this test rather than leave an empty panel."""
    for name, board in dashboards().items():
        exprs = [q for _, q in panel_queries(board)]
        exprs += [sel for _, sel, _ in variable_queries(board)]
        for expr in exprs:
            unknown = metric_names(expr) - exposed_names
            assert not unknown, (name, expr, unknown)
