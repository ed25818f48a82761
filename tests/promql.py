"""PromQL helpers for the tests: metric names an expression reads, and Grafana variable values."""

from __future__ import annotations

from typing import Any

import promql_parser

# What Grafana puts in place of the dashboards' variables when "All" is selected, and of the
# built-in range variable when the time picker shows the last hour.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__range": "1h",
    "$job": ".+",
    "$instance": ".+",
    "$operation": ".*",
    "$channel": ".*",
    "$rp_id": ".*",
}


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Every metric (or recorded series) name an expression selects, found by parsing it."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if type(node).__name__ == "VectorSelector":
            names.add(node.name)
        for attr in ("args", "lhs", "rhs", "expr", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if isinstance(child, list):
                for c in child:
                    walk(c)
            elif child is not None:
                walk(child)

    walk(promql_parser.parse(expr))
    return names
