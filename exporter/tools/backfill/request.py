"""What a backfill is asked for, checked before any call is spent: the range in each
operation's wall time, the chunk, the operations and the extra labels."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from exporter.api.records import WHEN_FORMAT
from exporter.settings.config import Config, OperationSettings

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"operation", "channel", "rp_id", "routing_answer", "outcome", "__name__"}


class BackfillError(Exception):
    """A backfill that cannot start or go on; the message says what to change."""


def parse_when(text: str, zone: tzinfo) -> int:
    """`YYYY-mm-dd` or `YYYY-mm-ddTHH:MM:SS`, wall time of the operation's zone, to epoch seconds."""
    for fmt in ("%Y-%m-%d", WHEN_FORMAT):
        try:
            wall = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(wall.replace(tzinfo=zone).timestamp())
    raise BackfillError(f"{text!r} is not a date: use YYYY-mm-dd or YYYY-mm-ddTHH:MM:SS")


@dataclass
class Request:
    """What to backfill; `signature` ties a progress file to the arguments that made it."""

    config: Config
    start_text: str
    end_text: str
    output: Path
    operations: list[OperationSettings]
    chunk: int
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def interval(self) -> int:
        return int(self.config.polling.interval)

    @property
    def signature(self) -> str:
        ops = ",".join(op.name for op in self.operations)
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return (
            f"from={self.start_text} to={self.end_text} chunk={self.chunk} "
            f"interval={self.interval} operations={ops} labels={extra}"
        )

    def ranges(self, now: Callable[[], float]) -> dict[str, tuple[int, int]]:
        """Each operation's [start, end) in epoch seconds, validated."""
        out = {}
        settle = int(self.config.polling.settle_delay)
        interval = self.interval
        for op in self.operations:
            start = parse_when(self.start_text, op.zone)
            end = parse_when(self.end_text, op.zone)
            if start >= end:
                raise BackfillError("--from must be before --to")
            for name, value in (("--from", start), ("--to", end)):
                if value % interval:
                    raise BackfillError(
                        f"{name} must fall on a polling-interval boundary "
                        f"({interval}s), so backfilled windows line up with live ones"
                    )
            latest = now() - settle
            if end > latest:
                last = datetime.fromtimestamp(latest - latest % interval, op.zone)
                raise BackfillError(
                    f"--to reaches into the last settle_delay ({settle}s) of operation "
                    f"{op.name}: records there may still be published; backfill up to "
                    f"{last:%Y-%m-%dT%H:%M:%S} at most"
                )
            out[op.name] = (start, end)
        return out


def check_labels(pairs: list[str]) -> dict[str, str]:
    """`--label NAME=VALUE` pairs, e.g. job and instance to match the live scrape's series."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise BackfillError(f"--label {pair!r}: expected NAME=VALUE with a valid label name")
        if name in RESERVED_LABELS:
            raise BackfillError(f"--label {name}: the exporter sets this label itself")
        out[name] = value
    return out
