"""The shipped Prometheus rules: valid, unit-tested with promtool, and using real metric names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.harness import promtool, required_binary
from tests.support.promql import metric_names

ROOT = Path(__file__).parent.parent.parent
RULES = [ROOT / "prometheus" / "rules.yaml", ROOT / "prometheus" / "alerts.yaml"]


def rules() -> list[dict[str, object]]:
    return [
        r for path in RULES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
    ]


def test_promtool_checks_the_rules():
    proc = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass():
    tests = sorted((ROOT / "prometheus" / "tests").glob("*.yaml"))
    assert tests
    proc = subprocess.run(
        [promtool(), "test", "rules", *map(str, tests)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {"#" + m.lower() for m in re.findall(r"^## (\S+)$", runbook, re.M)}
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 7
    for alert in alerts:
        labels, notes = alert["labels"], alert["annotations"]
        assert isinstance(labels, dict) and isinstance(notes, dict)
        assert labels["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert notes["summary"] and notes["description"], alert["alert"]
        url = str(notes["runbook_url"])
        assert url.startswith("https://") and url.endswith(
            f"docs/runbook.md#{str(alert['alert']).lower()}"
        )
        assert "#" + url.rsplit("#", 1)[1] in anchors  # the link opens the alert's own section


def test_rules_only_use_metrics_the_exporter_exposes(exposed_names):
    """A renamed metric must break this test, not silently silence an alert."""
    recorded = {str(r["record"]) for r in rules() if "record" in r}
    used = {name for r in rules() for name in metric_names(str(r["expr"]))}
    assert "wolkvox_sessions_total" in used
    assert used - exposed_names - recorded == set()


def test_alerts_follow_the_monitoring_mixins_annotation_style():
    """summary: one fixed sentence (it groups notifications, so no labels or values in it),
    capitalised, ending in a period; description: the detail, templated with the labels that
    say where. An absent() alert has no labels to template, so its description stays fixed."""
    for alert in (r for r in rules() if "alert" in r):
        name, notes = alert["alert"], alert["annotations"]
        assert isinstance(notes, dict)
        summary, description = str(notes["summary"]), str(notes["description"])
        assert "{{" not in summary, name
        assert summary[0].isupper() and summary.endswith("."), (name, summary)
        assert description[0].isupper() or description.startswith("{{"), (name, description)
        assert description.rstrip().endswith("."), (name, description)
        if not str(alert["expr"]).lstrip().startswith("absent("):
            assert "{{ $labels." in description, (name, description)


def test_a_tuned_copy_of_the_rules_passes_promtool(tmp_path):
    """What a team generates from its own configuration is as valid as the shipped rules."""
    config = tmp_path / "mine.yaml"
    config.write_text('selector: job="wolkvox"\nalerts:\n  stale_after: 2h\n  surge_factor: 5\n')
    made = subprocess.run(
        [
            sys.executable,
            str(ROOT / "prometheus" / "generate.py"),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    tuned = [tmp_path / "out" / "prometheus" / name for name in ("rules.yaml", "alerts.yaml")]
    proc = subprocess.run(
        [promtool(), "check", "rules", *map(str, tuned)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_alertmanager_example_passes_amtool_check_config():
    """Routes by severity, the inhibition, and the notification template all parse as the real
    Alertmanager reads them."""
    amtool = required_binary("amtool", "prometheus-alertmanager")
    proc = subprocess.run(
        [amtool, "check-config", "alertmanager.yml"],
        cwd=ROOT / "prometheus",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 templates" in proc.stdout and "2 receivers" in proc.stdout
