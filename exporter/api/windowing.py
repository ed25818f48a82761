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
