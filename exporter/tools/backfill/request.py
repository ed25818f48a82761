"""What a backfill is asked for, checked before any call is spent: the range in each
operation's wall time, the chunk, the operations and the extra labels."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from exporter.api import windowing
from exporter.api.records import WHEN_FORMAT, format_when
from exporter.settings.config import Config, OperationSettings

log = logging.getLogger(__name__)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"operation", "channel", "rp_id", "routing_answer", "outcome", "__name__"}


class BackfillError(Exception):
    """A backfill that cannot start or go on; the message says what to change."""


def parse_when(text: str, zone: ZoneInfo) -> int:
    """`YYYY-mm-dd` or `YYYY-mm-ddTHH:MM:SS`, wall time of the operation's zone, or with an
    explicit offset (`2026-04-04T23:30:00-04:00`), to epoch seconds.

    A wall time that happens twice (clocks go back) is refused: which of the two is meant cannot
    be guessed, and the answer moves the range by an hour. One that never happens (clocks go
    forward over it, midnight included in some zones) means the first instant after it."""
    for fmt in ("%Y-%m-%d", WHEN_FORMAT, WHEN_FORMAT + "%z"):
        try:
            wall = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if wall.tzinfo is not None:
            return int(wall.timestamp())
        return _from_wall(text, wall, zone)
    raise BackfillError(
        f"{text!r} is not a date: use YYYY-mm-dd, YYYY-mm-ddTHH:MM:SS or YYYY-mm-ddTHH:MM:SS+HH:MM"
    )


def _from_wall(text: str, wall: datetime, zone: ZoneInfo) -> int:
    earlier, later = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        if datetime.fromtimestamp(earlier.timestamp(), zone).replace(tzinfo=None) != wall:
            return _after_gap(text, int(earlier.timestamp()), zone)
        first, second = earlier.strftime("%z"), later.strftime("%z")
        iso = wall.strftime(WHEN_FORMAT)
        raise BackfillError(
            f"{text!r} happens twice in {zone} (the clocks go back over it): give its offset, "
            f"{iso}{first[:3]}:{first[3:]} for the first time or "
            f"{iso}{second[:3]}:{second[3:]} for the second"
        )
    return int(earlier.timestamp())


def _after_gap(text: str, guess: int, zone: ZoneInfo) -> int:
    """The first instant after a wall time the clocks skip, and a line saying so."""
    changes = windowing.offset_changes(
        guess - windowing.MAX_FALL_BACK, guess + windowing.MAX_FALL_BACK, zone
    )
    instant = next((change for change, step in changes if step > 0), guess)
    log.warning(
        "a wall time that does not exist in the operation's zone (the clocks go forward over "
        "it) means the first instant after it",
        extra={"given": text, "zone": str(zone), "read_as": format_when(instant, zone)},
    )
    return instant


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
    # Keys the customer digests: the state database's, so --write-state hands over customers
    # the live exporter recognises. None: one kept beside the output while the backfill runs,
    # so that a resumed run recognises the customers of the interrupted one.
    secret: bytes | None = None

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
