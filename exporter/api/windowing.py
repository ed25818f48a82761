"""Which time ranges to ask the API for, as pure functions of the cursor and the clock.

Vocabulary. A *window* is a half-open range of epoch seconds `[start, end)` aligned to the polling
interval; windows are what we count and what the cursor advances over. A *request range* is the
inclusive `[first, last]` range of whole seconds sent as `date_ini`/`date_end`. Each request range
reaches one second before its window (and `lookback` further for the first piece of a poll) because
the API does not document whether its bounds are inclusive: overlapping costs nothing, as the
dedupe store recognises rows it already counted, while a gap would lose rows for good.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo


@dataclass(frozen=True)
class Window:
    start: int
    end: int


@dataclass(frozen=True)
class Piece:
    """One request of a poll: the window it completes and the inclusive range to ask for."""

    window: Window
    first: int
    last: int


@dataclass(frozen=True)
class Plan:
    pieces: tuple[Piece, ...]
    skipped: int  # seconds given up because the cursor was further behind than max_catchup
    origin: int  # the earliest second this operation ever counts from


def align_down(t: float, interval: int) -> int:
    return int(t // interval) * interval


def plan(
    *,
    cursor: int | None,
    origin: int | None,
    now: float,
    interval: int,
    settle_delay: int,
    lookback: int,
    max_catchup: int,
) -> Plan:
    """Cut the span from the cursor to `now - settle_delay` into complete windows, oldest first.

    With no cursor (first start, no state) only the last complete window is read: history belongs to
    backfill, not to the live poller. A cursor older than `max_catchup` is moved forward and the gap
    reported in `skipped`, so a long outage does not turn into thousands of requests. Rows dated
    in the skipped span are then not counted at all, not even by the look-back re-read.
    """
    limit = align_down(now - settle_delay, interval)
    if cursor is None:
        cursor = limit - interval
    if origin is None:
        origin = cursor
    skipped = 0
    floor = limit - align_down(max_catchup, interval)
    if cursor < floor:
        skipped = floor - cursor
        cursor = floor
    pieces: list[Piece] = []
    start = cursor
    while start < limit:
        end = min(align_down(start, interval) + interval, limit)
        if pieces:
            reach = 1
        elif skipped:
            reach = 0  # the span before was given up whole, so that backfill recovers it exactly
        else:
            reach = 1 + lookback
        first = max(origin, start - reach)
        pieces.append(Piece(Window(start, end), first, end - 1))
        start = end
    return Plan(tuple(pieces), skipped, origin)


def merge(pieces: Sequence[Piece]) -> Piece:
    """Consecutive pieces of a plan as one request: a catch-up asks for several windows at once
    when they hold few rows. The range still reaches back as far as the first piece's did."""
    return Piece(
        Window(pieces[0].window.start, pieces[-1].window.end), pieces[0].first, pieces[-1].last
    )


def split(first: int, last: int) -> list[tuple[int, int]] | None:
    """Halve an inclusive request range that came back at the record cap; None at one second.

    The halves share their middle second so that an API with exclusive bounds still returns it in
    one of them; the dedupe store counts a row seen in both only once.
    """
    width = last - first
    if width <= 0:
        return None
    if width == 1:
        return [(first, first), (last, last)]
    mid = (first + last) // 2
    return [(first, mid), (mid, last)]


def parts(first: int, last: int, expected_rows: float, budget: float) -> list[tuple[int, int]]:
    """Cut an inclusive request range into as few equal parts as keep `expected_rows` under
    `budget` each, so that a range known to hold more than the record cap is not asked whole
    (and halved, and halved again) first. Neighbouring parts share their boundary second, as
    `split`'s halves do."""
    count = min(last - first + 1, max(1, math.ceil(expected_rows / budget)))
    if count <= 1:
        return [(first, last)]
    bounds = [first + round(i * (last - first) / count) for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


def next_poll_at(now: float, interval: int, settle_delay: int) -> float:
    """When the next window becomes complete: an interval boundary plus the settle delay."""
    boundary = align_down(now - settle_delay, interval) + interval
    return float(boundary + settle_delay)


def retention_floor(cursor: int, origin: int, lookback: int) -> int:
    """Rows dated before this second can never be re-read, so their fingerprints may go."""
    return max(origin, cursor - lookback - 1)


# Daylight saving. The API speaks the operation's wall time, and an API that keeps wall time
# compares wall-time strings: where clocks go back, a range whose bounds lie on either side of
# the change has its end before its start (refused, or answered with nothing), and a request for
# the repeated hour returns the rows of both of its occurrences. Zones never change their offset
# twice within `_PROBE`, so sampling at that step and bisecting finds every change.
_PROBE = 6 * 3600
# The longest step back of any zone's clocks (an hour, half an hour at Lord Howe), with room.
MAX_FALL_BACK = 2 * 3600


def _offset(t: int, zone: tzinfo) -> int:
    offset = datetime.fromtimestamp(t, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def offset_changes(first: int, last: int, zone: tzinfo) -> list[tuple[int, int]]:
    """Each UTC-offset change in `(first, last]`: its first second under the new offset, and the
    change in seconds (negative where clocks go back and a span of wall time comes again)."""
    out = []
    lo, before = first, _offset(first, zone)
    while lo < last:
        hi = min(lo + _PROBE, last)
        after = _offset(hi, zone)
        if after != before:
            low, high = lo, hi  # offset(low) == before, offset(high) == after
            while high - low > 1:
                mid = (low + high) // 2
                if _offset(mid, zone) == before:
                    low = mid
                else:
                    high = mid
            out.append((high, after - before))
        lo, before = hi, after
    return out


def wall_ordered(first: int, last: int, zone: tzinfo) -> list[tuple[int, int]]:
    """The inclusive range `[first, last]` cut where clocks go back, so that each part's wall-time
    bounds are in order. Where clocks go forward the wall time only jumps ahead: no cut."""
    parts = []
    for change, step in offset_changes(first, last, zone):
        if step < 0:
            parts.append((first, change - 1))
            first = change
    parts.append((first, last))
    return parts


def repeated(first: int, last: int, zone: tzinfo) -> list[tuple[int, int, int]]:
    """The spans of `[first, last]` whose wall time comes again after a fall-back, as
    `(start, end, shift)`: a second in `[start, end)` reads as the same wall time as the second
    `shift` later. A date in such a span is read as its earlier occurrence (see DateParser)."""
    return [
        (change + step, change, -step)
        for change, step in offset_changes(first, last + MAX_FALL_BACK, zone)
        if step < 0 and change + step <= last
    ]
