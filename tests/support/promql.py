"""PromQL helpers for the tests: metric names an expression reads, and Grafana variable values."""

from __future__ import annotations

from collections.abc import Iterator
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


def walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every node of a parsed expression, with the nodes above it, outermost first."""
    yield node, parents
    for attr in ("args", "lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        children = child if isinstance(child, list) else [child] if child is not None else []
        for c in children:
            yield from walk(c, (*parents, node))


def metric_names(expr: str) -> set[str]:
    """Every metric (or recorded series) name an expression selects, found by parsing it."""
    return {
        node.name
        for node, _ in walk(promql_parser.parse(expr))
        if type(node).__name__ == "VectorSelector"
    }
