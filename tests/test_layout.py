"""The shape of the code a contributor reads: short functions, typed values between modules.

These hold what issue 15 achieved, so that it stays true as metrics and features are added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10  # the package was found
    return modules


def test_no_function_in_the_package_is_longer_than_a_screen():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert long == [], f"split these (at most {MAX_FUNCTION_LINES} lines each): {long}"


def test_no_untyped_dicts_or_silenced_type_checks_between_modules():
    found = []
    pattern = re.compile(r"dict\[str, Any\]|type:\s*ignore")
    for path in _modules():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == []
