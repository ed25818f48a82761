"""`check --connect`: a first-run diagnosis of each operation's API access, with a few calls.

A new user's commonest mistakes are invisible while polling: a wrong `timezone` makes the
exporter ask for windows that in the API's wall time are not over yet (they read empty and are
never asked again), and a wrong server answers the same 404 as a quiet hour. So the diagnosis
looks for the newest rows around now, a span that reaches into the future of the configured zone,
and compares their dates with the clock: a gap of a whole number of hours on an operation with
traffic is an offset between the configured zone and the API's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from exporter.api import windowing
from exporter.api.client import ApiError, Client, Outcome, TokenGate
from exporter.api.records import WHEN_FORMAT, Answer, DateParser, Record, decode_rows, fingerprint
from exporter.settings.config import Operation, OperationSettings, Polling
from exporter.settings.durations import format_duration

# Spans asked in turn, as (before now, after now), until one holds rows. Each reaches past now,
# so that rows of an API whose wall time runs ahead of the configured zone come back too.
SPANS = ((600, 600), (6 * 3600, 6 * 3600), (3 * 86400, 86400))
MAX_CALLS = 16  # for the search of the newest rows; each call costs daily quota
BUSY = 10  # rows in the 10 minutes before the newest that make a gap telling
FUTURE_SLACK = 60  # seconds a row may be dated ahead of now before it is "in the future"

# Zones of the markets Wolkvox operates in, and their neighbours, named when their offset
# explains a gap. The first ones are the likeliest.
CANDIDATE_ZONES = (
    "America/Bogota",
    "America/Mexico_City",
    "America/Santiago",
    "America/Lima",
    "America/Guayaquil",
    "America/Panama",
    "America/Caracas",
    "America/Santo_Domingo",
    "America/Guatemala",
    "America/Costa_Rica",
    "America/El_Salvador",
    "America/Tegucigalpa",
    "America/La_Paz",
    "America/Argentina/Buenos_Aires",
    "America/Sao_Paulo",
    "America/Montevideo",
    "America/Asuncion",
    "America/Cancun",
    "America/Tijuana",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/Madrid",
    "UTC",
)


@dataclass
class Search:
    """What the calls of one operation's diagnosis found."""

    calls: int = 0
    received: int = 0
    capped: bool = False
    asked: tuple[int, int] | None = None  # the span that found rows, or the last one asked
    dates: dict[bytes, int] = field(default_factory=dict)  # distinct row -> epoch second
    before: list[int] = field(default_factory=list)  # seconds before the range that returned it
    undated: int = 0


@dataclass
class Report:
    lines: list[str]
    ok: bool


def diagnose(
    settings: OperationSettings,
    gate: TokenGate,
    clock: Callable[[], float] = time.time,
) -> Report:
    """Reachability, token, quota, rows and what their dates say about `timezone`."""
    client = Client.for_operation(settings, gate, lambda *_: None, retries=0)
    try:
        return _diagnose(client, settings.operation, settings.polling, clock())
    finally:
        client.close()


def _diagnose(client: Client, op: Operation, polling: Polling, now: float) -> Report:
    search = Search()
    parse = DateParser(op.zone)
    cap = polling.max_records_per_request
    try:
        for before, after in SPANS:
            search.asked = (int(now) - before, int(now) + after)
            if _newest(client, search, parse, *search.asked, cap):
                break
        newest = max(search.dates.values(), default=None)
        if newest is not None and newest > now + FUTURE_SLACK:
            # Rows dated ahead of now: the API's wall time runs ahead of the configured zone,
            # by at least this much; find how far (its newest rows are now, in its own zone).
            _newest(client, search, parse, newest + 1, int(now) + SPANS[1][1], cap)
    except ApiError as exc:
        if exc.outcome is Outcome.UNAUTHORIZED:
            return Report([f"reachable, token INVALID: {exc}"], False)
        if exc.outcome is Outcome.QUOTA_EXCEEDED:
            return Report([f"reachable, token valid, daily quota EXHAUSTED: {exc}"], False)
        return Report([f"NOT reachable: {exc}"], False)
    lines = ["reachable, token valid"]
    ok = True
    try:
        info = client.token_info()
        if info.used is not None and info.limit is not None:
            lines[0] += f"; quota used {info.used}/{info.limit} today"
        else:
            lines[0] += "; quota used ?/? (token_info gave no counts)"
    except ApiError as exc:
        lines[0] += f"; token_info FAILED: {exc}"
        ok = False
    lines.extend(_rows(search, cap, op.zone, now))
    return Report(lines, ok)


def _newest(
    client: Client, search: Search, parse: DateParser, first: int, last: int, cap: int
) -> bool:
    """Read `[first, last]`, and when it comes back at the cap, its later half first: the
    newest rows are what tells the time zone, so the search does not read the whole span.
    Returns whether rows were found."""
    if search.calls >= MAX_CALLS:
        return False
    search.calls += 1
    answer: Answer | None
    try:
        answer = client.fetch(first, last)
        full = answer.size >= cap
    except ApiError as exc:
        if exc.outcome is not Outcome.TOO_MANY_RECORDS:
            raise
        answer, full = None, True
    if answer is not None:
        _read(search, parse, answer, first)
    if full:
        search.capped = True
        halves = windowing.split(first, last)
        if halves is not None:
            later, earlier = halves[1], halves[0]
            if _newest(client, search, parse, *later, cap):
                return True
            if _newest(client, search, parse, *earlier, cap):
                return True
    return answer is not None and answer.size > 0


def _read(search: Search, parse: DateParser, answer: Answer, first: int) -> None:
    search.received += answer.size
    for raw, row in zip(answer.rows, decode_rows(answer.rows), strict=True):
        second = parse(row.date) if isinstance(row, Record) else None
        if second is None:
            search.undated += 1
            continue
        fp = fingerprint(raw)
        if fp in search.dates:
            continue
        search.dates[fp] = second
        if second < first:
            search.before.append(first - second)


def _rows(search: Search, cap: int, zone: ZoneInfo, now: float) -> list[str]:
    """The report's lines on the rows: how many, their dates, and what those say."""
    lines = [
        f"{search.calls} request(s), {search.received} row(s) received"
        + (f"; answers at the record cap ({cap}) were split, as polls do" if search.capped else "")
    ]
    assert search.asked is not None
    first, last = search.asked
    asked = f"{_when(first, zone)} to {_when(last, zone)} ({zone.key})"
    if not search.dates:
        lines.append(
            f"no records from {asked}: the API answered its 'no records' 404. That means either "
            "no routed interactions in that span, or that diagram_9 is not available on this "
            "server (check `server`, and that the report is enabled for the operation)"
            + (f"; {search.undated} row(s) had no usable date" if search.undated else "")
        )
        return lines
    if search.before:
        lines.append(
            f"{len(search.before)} row(s) dated before the range that returned them, up to "
            f"{_minutes(max(search.before))} earlier: the API selects rows by another time than "
            "their date (the exporter counts them all the same)"
        )
    newest = max(search.dates.values())
    recent = sum(1 for s in search.dates.values() if newest - 600 <= s <= newest)
    gap = int(now) - newest
    future = sum(1 for s in search.dates.values() if s > now + FUTURE_SLACK)
    if future:
        lines.append(
            f"{future} row(s) dated in the future of {zone.key}, the newest {_minutes(-gap)} "
            "ahead of now: `timezone` is behind the API's"
            + _zone_hint(gap, zone, now, recent, always=True)
        )
    else:
        lines.append(
            f"newest row {_when(newest, zone)}, {_minutes(gap)} before now in {zone.key} "
            f"({recent} row(s) in the 10 minutes before it)" + _zone_hint(gap, zone, now, recent)
        )
    return lines


def _zone_hint(gap: int, zone: ZoneInfo, now: float, recent: int, always: bool = False) -> str:
    """What a gap of about a whole number of hours (or half hours) says about the zone."""
    steps = round(gap / 1800)
    if not steps or abs(gap - steps * 1800) > 600:
        if always:
            return ""
        return ": the dates agree with the configured zone" if abs(gap) < 1200 else ""
    configured = _offset(zone, now)
    api = configured - timedelta(seconds=steps * 1800)
    names = [name for name in CANDIDATE_ZONES if _offset(ZoneInfo(name), now) == api]
    guess = ", ".join(names[:4]) if names else f"a zone at UTC{_format_offset(api)}"
    hint = (
        f"; the API's clock reads {_minutes(abs(steps) * 1800)} "
        f"{'behind' if steps > 0 else 'ahead of'} {zone.key} (UTC{_format_offset(configured)}): "
        f"is `timezone` {guess}?"
    )
    if recent < BUSY and steps > 0:
        hint += " (on a quiet operation the gap may just be no traffic since)"
    return hint


def _offset(zone: ZoneInfo, now: float) -> timedelta:
    return datetime.fromtimestamp(now, zone).utcoffset() or timedelta(0)


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _minutes(seconds: int) -> str:
    if seconds >= 5400:
        return format_duration(round(seconds / 60) * 60)
    return f"{seconds / 60:.0f} min"


def _when(epoch: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, zone).strftime(WHEN_FORMAT)
