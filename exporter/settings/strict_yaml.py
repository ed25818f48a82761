"""Reading the exporter's YAML files as strictly as Prometheus' own tools read theirs.

PyYAML's `safe_load` keeps the last of two equal keys: in a web config a second, empty
`basic_auth_users:` or `tls_server_config:` silently turns authentication or TLS off. Go's
`yaml.UnmarshalStrict` refuses such a file, and so do we, naming both lines. Aliases are refused
too (a config has no need of them, and "billion laughs" expands a few lines into gigabytes), as
are files over 1 MiB and nesting deeper than any config needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20
MAX_DEPTH = 32


class YAMLProblem(ValueError):
    """What is wrong with a file, with its line; the caller adds which file."""

    def describe(self, path: object) -> str:
        """`PATH is not valid YAML at line N: problem`, or `...: problem` without a line."""
        text = str(self)
        return f"{path} is not valid YAML" + (f" {text}" if text.startswith("at ") else f": {text}")


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            peek = cast("Callable[[], yaml.AliasEvent]", self.peek_event)
            event = peek()
            line = f"at line {event.start_mark.line + 1}: " if event.start_mark else ""
            raise YAMLProblem(f"{line}aliases (*{event.anchor}) are not allowed")
        node: Node | None = super().compose_node(parent, index)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                ) from None
            line = key_node.start_mark.line + 1
            if first is not None:
                raise YAMLProblem(
                    f"at line {line}: duplicate key {key!r} (first at line {first}); the second "
                    "would silently replace the first"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _depth(node: Node, limit: int) -> None:
    """Refuse nesting deeper than `limit`, without recursion (a deep file must not overflow
    Python's stack)."""
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            raise YAMLProblem(
                f"at line {current.start_mark.line + 1}: nested deeper than {limit} levels"
            )
        if isinstance(current, SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)
        elif isinstance(current, MappingNode):
            for key, value in current.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif not isinstance(current, ScalarNode):  # pragma: no cover - PyYAML has no others
            raise YAMLProblem("unexpected YAML node")


def load(text: str) -> Any:
    """The document in `text`, or YAMLProblem naming the line of the first problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YAMLProblem(f"the file is larger than {MAX_BYTES // 1024} KiB")
    loader = _Loader(text)
    try:
        try:
            # Composing nests one Python frame per level: a file nested thousands deep ends in
            # RecursionError, which is refused like any other depth past the limit.
            node = loader.get_single_node()
        except RecursionError:
            raise YAMLProblem(f"nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        _depth(node, MAX_DEPTH)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YAMLProblem(f"{where}{exc.problem or 'syntax error'}") from None
    except yaml.YAMLError as exc:
        raise YAMLProblem(str(exc)) from None
    finally:
        loader.dispose()
