"""Every shipped dashboard passes grafana/dashboard-linter's rules (tests/dashboard_lint.py),
but for the exclusions in grafana/.lint, each of which carries its reason."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard_lint import RULES, excluded, lint

ROOT = Path(__file__).parent.parent.parent
BOARDS = {
    p.name: json.loads(p.read_text(encoding="utf-8"))
    for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
}
EXCLUSIONS: dict[str, Any] = yaml.safe_load((ROOT / "grafana" / ".lint").read_text())["exclusions"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_passes_the_linters_rules(name: str) -> None:
    problems = [p for p in lint(BOARDS[name]) if excluded(p, EXCLUSIONS) is None]
    assert not problems, "\n".join(f"{p.rule}: {p.panel}: {p.message}" for p in problems)


def test_every_exclusion_has_a_reason_and_still_matches_a_problem() -> None:
    used = {
        (p.rule, json.dumps(entry, sort_keys=True))
        for board in BOARDS.values()
        for p in lint(board)
        if (entry := excluded(p, EXCLUSIONS)) is not None
    }
    for rule, spec in EXCLUSIONS.items():
        assert rule in RULES, f"unknown rule {rule}"
        assert len(spec["reason"]) > 40, rule
        for entry in spec["entries"]:
            assert (rule, json.dumps(entry, sort_keys=True)) in used, (rule, entry)


def test_only_poll_driven_counters_keep_fixed_windows() -> None:
    """The rate-interval exclusions cover wolkvox_* series only: anything else uses
    $__rate_interval."""
    for board in BOARDS.values():
        for panel in board["panels"]:
            entry = {"dashboard": board["title"], "panel": panel["title"]}
            if entry in EXCLUSIONS["target-rate-interval-rule"]["entries"]:
                for t in panel["targets"]:
                    assert "process_" not in t["expr"], panel["title"]


def _break(board: dict[str, Any], how: str) -> dict[str, Any]:
    b = copy.deepcopy(board)
    panel = b["panels"][-1]  # a gauge panel: no rate, nothing excluded
    target = panel["targets"][0]
    variables = {v["name"]: v for v in b["templating"]["list"]}
    if how == "template-job-rule":
        variables["job"]["allValue"] = ".*"
    elif how == "template-instance-rule":
        b["templating"]["list"] = [v for v in b["templating"]["list"] if v["name"] != "instance"]
    elif how == "template-datasource-rule":
        variables["datasource"]["query"] = "loki"
    elif how == "template-label-promql-rule":
        variables["operation"]["definition"] = "label_values(wolkvox_up{, operation)"
    elif how == "template-on-time-change-reload-rule":
        variables["operation"]["refresh"] = 1
    elif how == "panel-datasource-rule":
        panel["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    elif how == "panel-title-description-rule":
        panel["description"] = ""
    elif how == "panel-units-rule":
        panel["fieldConfig"]["defaults"]["unit"] = "furlongs"
    elif how == "panel-no-targets-rule":
        panel["targets"] = []
    elif how == "target-promql-rule":
        target["expr"] = "sum(rate(x[5m]"
    elif how == "target-rate-interval-rule":
        target["expr"] = 'rate(process_cpu_seconds_total{job=~"$job",instance=~"$instance"}[5m])'
    elif how == "target-job-rule":
        target["expr"] = 'wolkvox_up{instance=~"$instance"}'
    elif how == "target-instance-rule":
        target["expr"] = 'wolkvox_up{job=~"$job"}'
    elif how == "target-counter-agg-rule":
        target["expr"] = 'sum(wolkvox_interactions_total{job=~"$job",instance=~"$instance"})'
    return b


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_catches_what_it_names(rule: str) -> None:
    board = BOARDS["overview.json"]
    before = Counter(p.rule for p in lint(board))
    after = Counter(p.rule for p in lint(_break(board, rule)))
    assert after[rule] > before[rule], after - before
