"""The rules of grafana/dashboard-linter, ported to Python for the shipped dashboards.

Rules and their names follow the linter's own (lint/rules.go). Exclusions live in
grafana/.lint, in the linter's format: rule -> reason and entries of dashboard and panel.
An exclusion that no longer matches anything is itself an error, so the list stays true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser

from tests.support.promql import walk

Dashboard = dict[str, Any]
Panel = dict[str, Any]

# Panels that show queries; others (text, row) are not linted for targets.
QUERY_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge", "bargauge"}
VALID_UNITS = {
    # The linter's list (lint/rule_panel_units.go), the families our panels can use.
    "none", "string", "short", "percent", "percentunit", "bytes", "decbytes", "bits",
    "s", "ms", "m", "h", "d", "dtdurations", "dtdurationms", "dateTimeAsIso",
    "dateTimeFromNow", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm",
    "wpm", "bool", "bool_yes_no", "bool_on_off",
}  # fmt: skip
# Grafana's built-in range variables, replaced by durations no query would write by hand,
# so a rule can tell $__rate_interval from a fixed window after parsing.
MAGIC = {"$__rate_interval": "8869s", "$__interval": "8867s", "$__range": "8863s"}
RATE_INTERVAL_SECONDS = 8869


@dataclass(frozen=True)
class Problem:
    rule: str
    dashboard: str
    panel: str
    message: str


def parse(expr: str) -> Any:
    for name, value in MAGIC.items():
        expr = expr.replace(name, value)
    return promql_parser.parse(expr)


def kind(node: Any) -> str:
    return type(node).__name__


# -- dashboard rules --------------------------------------------------------------------


def template_datasource(d: Dashboard) -> Iterator[str]:
    ds = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    if not ds or ds[0]["name"] != "datasource" or ds[0]["query"] != "prometheus":
        yield "needs a Prometheus datasource variable named datasource"


def _template(d: Dashboard, name: str) -> Iterator[str]:
    found = [v for v in d["templating"]["list"] if v["name"] == name]
    if not found:
        yield f"is missing the {name} template"
        return
    t = found[0]
    if t.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}"):
        yield f"{name} template should use datasource '$datasource'"
    if t["type"] != "query":
        yield f"{name} template should be a Prometheus query"
    if t.get("label") != name.title():
        yield f"{name} template should be labeled '{name.title()}'"
    if not t.get("multi"):
        yield f"{name} template should be a multi select"
    if t.get("allValue") != ".+":
        yield f"{name} template allValue should be '.+'"


def template_job(d: Dashboard) -> Iterator[str]:
    yield from _template(d, "job")


def template_instance(d: Dashboard) -> Iterator[str]:
    yield from _template(d, "instance")


def template_label_promql(d: Dashboard) -> Iterator[str]:
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["definition"])
        if not m:
            yield f"template {v['name']}: not label_values(selector, label)"
            continue
        try:
            parse(m.group(1))
        except Exception as exc:
            yield f"template {v['name']}: invalid PromQL {m.group(1)!r}: {exc}"


def template_on_time_change_reload(d: Dashboard) -> Iterator[str]:
    for v in d["templating"]["list"]:
        if v["type"] == "query" and v.get("refresh") != 2:
            yield f"template {v['name']} should refresh on time range change (refresh: 2)"


DASHBOARD_RULES: dict[str, Callable[[Dashboard], Iterator[str]]] = {
    "template-datasource-rule": template_datasource,
    "template-job-rule": template_job,
    "template-instance-rule": template_instance,
    "template-label-promql-rule": template_label_promql,
    "template-on-time-change-reload-rule": template_on_time_change_reload,
}


# -- panel rules -------------------------------------------------------------------------


def panel_datasource(p: Panel) -> Iterator[str]:
    if p.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}"):
        yield "panel datasource should be $datasource"


def panel_title_description(p: Panel) -> Iterator[str]:
    if not p.get("title") or not p.get("description"):
        yield "panel needs a title and a description"


def panel_units(p: Panel) -> Iterator[str]:
    if p["type"] in QUERY_PANELS:
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        if unit not in VALID_UNITS:
            yield f"no or invalid unit: {unit!r}"


def panel_no_targets(p: Panel) -> Iterator[str]:
    if p["type"] in QUERY_PANELS and not p.get("targets"):
        yield "panel has no targets"


PANEL_RULES: dict[str, Callable[[Panel], Iterator[str]]] = {
    "panel-datasource-rule": panel_datasource,
    "panel-title-description-rule": panel_title_description,
    "panel-units-rule": panel_units,
    "panel-no-targets-rule": panel_no_targets,
}


# -- target rules -----------------------------------------------------------------------


def target_promql(expr: str) -> Iterator[str]:
    try:
        parse(expr)
    except Exception as exc:
        yield f"invalid PromQL {expr!r}: {exc}"


def target_rate_interval(expr: str) -> Iterator[str]:
    for node, parents in walk(parse(expr)):
        if kind(node) != "MatrixSelector" or not parents:
            continue
        if node.range.total_seconds() == RATE_INTERVAL_SECONDS:
            continue
        parent = parents[-1]
        if kind(parent) == "Call" and parent.func.name in ("rate", "irate"):
            yield f"{expr!r} should use $__rate_interval"


def _required_matcher(label: str) -> Callable[[str], Iterator[str]]:
    def rule(expr: str) -> Iterator[str]:
        for node, _ in walk(parse(expr)):
            if kind(node) != "VectorSelector":
                continue
            matchers = [(m.name, str(m.op), m.value) for m in node.matchers.matchers]
            if not any(n == label and "Re" in op and v == f"${label}" for n, op, v in matchers):
                yield f'{node.name} in {expr!r} has no {label}=~"${label}" matcher'

    return rule


def target_counter_agg(expr: str) -> Iterator[str]:
    for node, parents in walk(parse(expr)):
        if kind(node) != "VectorSelector" or not node.name.endswith("_total"):
            continue
        ok = (
            len(parents) >= 2
            and kind(parents[-1]) == "MatrixSelector"
            and kind(parents[-2]) == "Call"
            and parents[-2].func.name in ("rate", "irate", "increase")
        )
        if not ok:
            yield f"counter {node.name} in {expr!r} is not aggregated with rate, irate or increase"


TARGET_RULES: dict[str, Callable[[str], Iterator[str]]] = {
    "target-promql-rule": target_promql,
    "target-rate-interval-rule": target_rate_interval,
    "target-job-rule": _required_matcher("job"),
    "target-instance-rule": _required_matcher("instance"),
    "target-counter-agg-rule": target_counter_agg,
}
RULES = [*DASHBOARD_RULES, *PANEL_RULES, *TARGET_RULES]


def lint(d: Dashboard) -> list[Problem]:
    title = d["title"]
    out = [
        Problem(rule, title, "", message)
        for rule, check in DASHBOARD_RULES.items()
        for message in check(d)
    ]
    for p in d["panels"]:
        for rule, panel_check in PANEL_RULES.items():
            out += [Problem(rule, title, p["title"], m) for m in panel_check(p)]
        for t in p.get("targets", []):
            for rule, target_check in TARGET_RULES.items():
                if rule != "target-promql-rule" and list(target_promql(t["expr"])):
                    continue  # invalid PromQL is the promql rule's to report
                out += [Problem(rule, title, p["title"], m) for m in target_check(t["expr"])]
    return out


def excluded(problem: Problem, exclusions: dict[str, Any]) -> dict[str, str] | None:
    """The exclusion entry that covers this problem, if any."""
    for entry in exclusions.get(problem.rule, {}).get("entries", []):
        if (
            entry.get("dashboard", problem.dashboard) == problem.dashboard
            and entry.get("panel", problem.panel) == problem.panel
        ):
            return dict(entry)
    return None
