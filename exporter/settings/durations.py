"""Durations and sizes as Prometheus and its exporters write them (`90s`, `1h30m`, `64MiB`).

Apart from the config model because logs, the landing page and backfill's messages render
durations too, and none of them should need the config to do it.
"""

from __future__ import annotations

import re
from typing import Any

_DURATION_RE = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(value: Any) -> float:
    """Turn a Prometheus-style duration (`90s`, `5m`, `1h30m`) or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 90s, 5m or 1h")
    text = value.strip()
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(
            f"{value!r} is not a duration; use units y w d h m s ms, e.g. 90s, 5m, 1h30m"
        )
    groups = match.groups()[1::2]
    return float(sum(int(g) * unit for g, unit in zip(groups, _DURATION_UNITS, strict=True) if g))


def format_duration(seconds: float) -> str:
    """Render seconds the way the config accepts them, for logs and the landing page."""
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        return f"{int(seconds * 1000)}ms"
    rest = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 10**6, "MiB": 1 << 20}
_UNITS |= {"GB": 10**9, "GiB": 1 << 30}


def parse_bytes(value: Any) -> int:
    """A size as a number of bytes or with a unit: `65536`, `64MiB`, `10MB`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"expected a size such as 64MiB or 10MB, not {value!r}")
        size = int(match.group(1)) * _UNITS[match.group(2)]
    if size < 1024:
        raise ValueError("must be at least 1KiB")
    return size
