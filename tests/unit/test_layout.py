"""The shape of the code a contributor reads: short functions, typed values between modules.

These hold what issue 15 achieved, so that it stays true as metrics and features are added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent.parent / "exporter"
MAX_FUNCTION_LINES = 60
# A class a reader can hold in mind: the poller, the widest room (its loop, commit and state,
# with planning, reading and health in rooms of their own), stands at the limit.
MAX_CLASS_LINES = 210


# The packages in the order a row travels, from configuration to the command line: a package
# may import its own modules and those of packages before it, never one after it. `tools` sit
# beside the flow; the core (everything before `tools`) never imports them.
FLOW = ("settings", "api", "counting", "state", "polling", "exposition", "tools", "cli")
ROOT_MODULES = {"__init__", "logs"}  # below every package: the version and log set-up


def _modules() -> list[Path]:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10  # the package was found
    return modules


def _package(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "exporter":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from exporter import x: x is a root module or a package
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("exporter."))
    return found


def test_every_module_lives_in_a_package_of_the_flow():
    stray = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if _package(p) not in FLOW and _package(p) not in ROOT_MODULES | {"__version__"}
    ]
    assert stray == [], f"place these in one of {FLOW}: {stray}"


def test_imports_run_one_way_down_the_flow():
    """A package imports only packages before it in FLOW; so no package of the core (before
    `tools`) imports a tool, and the path of a row reads in one direction."""
    upward = []
    for path in _modules():
        here = _package(path)
        for target in _imported_packages(path):
            if target in ROOT_MODULES or target == "__version__" or target == here:
                continue
            if here in ROOT_MODULES or FLOW.index(target) > FLOW.index(here):
                upward.append(f"{path.relative_to(PACKAGE)} imports exporter.{target}")
    assert upward == []


def test_no_function_in_the_package_is_longer_than_a_screen():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert long == [], f"split these (at most {MAX_FUNCTION_LINES} lines each): {long}"


def test_no_class_in_the_package_is_longer_than_a_few_screens():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines})")
    assert long == [], f"split these (at most {MAX_CLASS_LINES} lines each): {long}"


def test_no_untyped_dicts_or_silenced_type_checks_between_modules():
    found = []
    pattern = re.compile(r"dict\[str, Any\]|type:\s*ignore")
    for path in _modules():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == []
