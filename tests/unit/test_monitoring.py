"""The monitoring generator (prometheus/generate.py): one configuration makes the rules, the
alerts, the dashboards and the Kubernetes objects, and a team's tuned copy changes all of them."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.promql import metric_names

ROOT = Path(__file__).parent.parent.parent


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "monitoring_generate", ROOT / "prometheus" / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def rules_of(text: str) -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_every_monitoring_file_is_what_the_generator_writes():
    gen = generator()
    rendered = gen.render(gen.load(gen.CONFIG), "prometheus/monitoring.yaml")
    assert {"prometheus/rules.yaml", "prometheus/alerts.yaml"} <= set(rendered)
    assert any(name.startswith("grafana/dashboards/") for name in rendered)
    assert any(name.startswith("deploy/kubernetes/base/monitoring/") for name in rendered)
    for name, text in rendered.items():
        assert (ROOT / name).read_text(encoding="utf-8") == text, (
            "run: python3 prometheus/generate.py"
        )


def test_every_alert_links_an_absolute_runbook_section_and_a_dashboard():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {m.lower() for m in re.findall(r"^## (\S+)$", runbook, re.M)}
    boards = {
        json.loads(p.read_text())["uid"] for p in (ROOT / "grafana" / "dashboards").glob("*.json")
    }
    alerts = [
        r for r in rules_of((ROOT / "prometheus" / "alerts.yaml").read_text()) if "alert" in r
    ]
    assert len(alerts) >= 10
    for alert in alerts:
        url, dashboard = alert["annotations"]["runbook_url"], alert["annotations"]["dashboard_url"]
        assert url.startswith("https://"), alert["alert"]
        assert url.rsplit("#", 1)[1] in anchors, alert["alert"]  # the section exists
        assert dashboard.split("?")[0].removeprefix("/d/") in boards, alert["alert"]


def test_a_tuned_copy_selects_its_job_links_its_grafana_and_takes_its_thresholds(tmp_path):
    gen = generator()
    config = tmp_path / "mine.yaml"
    config.write_text(
        'selector: job="wolkvox",env="prod"\n'
        "runbook_url: https://wiki.example.com/wolkvox-runbook\n"
        "grafana_url: https://grafana.example.com/\n"
        "alerts:\n  api_failing_for: 5m\n  stale_after: 1h\n  surge_factor: 4\n"
    )
    out = tmp_path / "out"
    assert gen.main(["--config", str(config), "--out", str(out)]) == 0
    rules = rules_of((out / "prometheus" / "rules.yaml").read_text())
    alerts = rules_of((out / "prometheus" / "alerts.yaml").read_text())
    # Every selector that reads an exporter series carries the job, in rules and alerts alike.
    for rule in rules + alerts:
        for name in metric_names(str(rule["expr"])):
            if name.startswith("wolkvox_"):
                assert re.search(name + r'\{[^}]*job="wolkvox",env="prod"', rule["expr"]), rule
    by_name = {a["alert"]: a for a in alerts}
    failing = by_name["WolkvoxApiFailing"]
    assert (
        failing["for"] == "5m" and "failed for 5 minutes" in failing["annotations"]["description"]
    )
    assert by_name["WolkvoxDataStale"]["expr"].endswith("> 3600")
    assert "> 4 *" in by_name["WolkvoxVolumeSurge"]["expr"]
    for alert in alerts:
        notes = alert["annotations"]
        assert (
            notes["runbook_url"]
            == "https://wiki.example.com/wolkvox-runbook#" + alert["alert"].lower()
        )
        assert notes["dashboard_url"].startswith("https://grafana.example.com/d/wolkvox-")
    # The dashboards offer only the selected jobs, and Kubernetes carries the same rules.
    board = json.loads((out / "grafana" / "dashboards" / "overview.json").read_text())
    (job,) = [v for v in board["templating"]["list"] if v["name"] == "job"]
    assert (
        job["definition"]
        == 'label_values(wolkvox_exporter_build_info{job="wolkvox",env="prod"}, job)'
    )
    k8s = yaml.safe_load(
        (out / "deploy" / "kubernetes" / "base" / "monitoring" / "prometheusrule.yaml").read_text()
    )
    assert [r for g in k8s["spec"]["groups"] for r in g["rules"]] == rules + alerts
    # The committed files are untouched.
    assert (ROOT / "prometheus" / "alerts.yaml").read_text().count('job="wolkvox"') == 0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('selecter: job="x"\n', "unknown setting(s) selecter"),
        ("alerts:\n  api_failing: 5m\n", "alerts: unknown setting(s) api_failing"),
        ("runbook_url: docs/runbook.md\n", "runbook_url must be an absolute URL"),
        ("grafana_url: grafana.local\n", "grafana_url must be an absolute URL"),
        ("alerts:\n  surge_factor: lots\n", "alerts.surge_factor"),
        (
            "alerts:\n  stale_after: half an hour\n",
            "alerts.stale_after: 'half an hour' is not a duration",
        ),
    ],
)
def test_a_mistaken_configuration_is_refused_with_its_key(tmp_path, capsys, text, says):
    gen = generator()
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert gen.main(["--config", str(config), "--out", str(tmp_path / "out")]) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
