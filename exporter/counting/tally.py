"""Counting decoded records into label sets, each row exactly once.

One `Tally` per operation: the hot path from an answer's rows to its `counts.Ledger`. It owns the
dedupe store, the dates, the label values (`labels.Labeler`) and the session and customer
memories; it does no I/O and takes no locks (the poller serialises access), so it can be tested
and benchmarked on its own.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import attrgetter, mod, sub
from typing import cast
from zoneinfo import ZoneInfo

import msgspec

from exporter.api import windowing
from exporter.api.records import Answer, DateParser, Record
from exporter.counting import labels
from exporter.counting.conversations import Conversations, Rows
from exporter.counting.counts import Counts, Ledger, TallyState
from exporter.counting.customers import Customers
from exporter.counting.fresh import Fresh, fresh_rows, keep_only
from exporter.counting.labels import LabelKey
from exporter.counting.seen import Changes, Found, SeenRows, Sessions, sessions_in
from exporter.settings.config import OperationSettings

__all__ = ["Ingested", "LabelKey", "Tally"]

_CHANNEL = attrgetter("channel")
_ANSWER = attrgetter("routing_answer")
_DATE = attrgetter("date")
_RP = attrgetter("rp_id")
_CUSTOMER = attrgetter("customer")

# A row dated after the range that returned it is remembered until its own date passes, but
# never longer than this past the range: dates a day ahead are not the API selecting by
# another time, and must not pin memory.
FUTURE_HORIZON = 86400


@dataclass
class Ingested:
    received: int = 0
    counted: int = 0
    duplicates: int = 0
    rejected: int = 0
    # Rows counted although dated outside the asked range, and how far outside (seconds).
    outside: int = 0
    before: int = 0
    after: int = 0

    def add(self, other: Ingested) -> None:
        """Sum the answers of one poll, for its one summary log line."""
        self.received += other.received
        self.counted += other.counted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.outside += other.outside
        self.before = max(self.before, other.before)
        self.after = max(self.after, other.after)


class Tally:
    """One operation's counting: rows in, each counted once, into its `Ledger`.

    The tally owns what turns rows into counts (dedupe, dates, label values, the session and
    customer memories); the ledger owns the counts. Both are what a restart restores.
    """

    def __init__(self, settings: OperationSettings, secret: bytes | None = None) -> None:
        """`secret` keys the digests of customers kept for re-contacts: the state store's,
        so that they mean the same after a restart; a random one without a store."""
        self.interval = settings.interval
        kpis = settings.kpis
        self.session_horizon = int(kpis.session_horizon)
        self.labels = labels.Labeler(settings.labels, kpis)
        self.outcome_names = self.labels.classify.names
        self.ledger = Ledger(settings.labels.last_window_retention)
        self.zone = settings.zone
        # Changes whenever the counts may have: a commit that finds it unchanged saves and
        # publishes only where the poller stands (Poller.commit).
        self.revision = 0
        self.parse_date = DateParser(settings.zone)
        self.seen = SeenRows()
        self.sessions = Sessions()
        self.customers = Customers()
        self.conversations = Conversations(
            lambda: self.ledger.counts,
            kpis,
            secret if secret is not None else os.urandom(32),
            self.labels.outcome,
            self.labels.channel,
            settings.zone,
        )

    @property
    def counts(self) -> Counts:
        """The counts so far (live: copy them to keep them)."""
        return self.ledger.counts

    def ingest(
        self, answer: Answer, first: int, last: int, windows: tuple[int, int] | None = None
    ) -> Ingested:
        """Count the rows of one answer to the inclusive request range `[first, last]`.

        Every row that can be dated is counted, whatever its date: the API may select rows by
        another time than the `date` they carry (chat_1 selects by close time), and a wrong
        `timezone` shifts every date. A row's window is its date's, kept within `windows`
        (the first and last window start still open, by default those of the range): a row
        dated in a window already published counts in the first open one. It is remembered
        until no later request can return it, that is until the range that returned it (or its
        own date, if later) leaves the re-read horizon.

        This is the hot path (60,000 rows per answer at most), so it works in passes: group the
        rows by digest, decode only the groups with copies not seen before, then update the
        counters once per label set and window rather than once per row.

        The cyclic garbage collector is paused meanwhile: ingest allocates a few hundred thousand
        tuples and structs that form no cycles, and the collections they would trigger cost
        about a tenth of the ingest time on a full answer (measured in benchmarks/ingest.py).
        """
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._ingest(answer, first, last, windows)
        finally:
            if paused:
                gc.enable()

    def _ingest(
        self, answer: Answer, first: int, last: int, windows: tuple[int, int] | None
    ) -> Ingested:
        result = Ingested(received=answer.size)
        if answer.size:
            self.revision += 1
        decoded, fresh = fresh_rows(answer, self.seen.copies)
        records, seconds, fresh, rejects = countable(decoded, fresh, self.parse_date)
        lowest, highest = (min(seconds), max(seconds)) if records else (first, last)
        twins = _twins(self.zone, first, last, lowest, highest)
        for reason, fp, n in rejects:
            self._reject(reason, fp, n, last if twins is None else max(last, twins[0]), result)
        if records:
            if lowest < first or highest > last:
                self.counts.outside_range += _outside(seconds, fresh, first, last, result)
            counts = self.counts
            if counts.newest is None or highest > counts.newest:
                counts.newest = highest
            if windows is None:
                windows = (first - first % self.interval, last - last % self.interval)
            result.counted = self._file(records, seconds, fresh, last, windows, twins)
        result.duplicates = result.received - result.counted - result.rejected
        self.counts.received += result.received
        self.counts.duplicates += result.duplicates
        return result

    def _reject(self, reason: str, fp: bytes, n: int, last: int, result: Ingested) -> None:
        # Filed under the end of this range: no later request returns the row once the
        # look-back has passed that second.
        new = self.seen.admit(fp, n, last)
        rejected = self.counts.rejected
        rejected[reason] = rejected.get(reason, 0) + new
        result.rejected += new

    def _file(
        self,
        records: list[Record],
        seconds: list[int],
        fresh: Fresh,
        last: int,
        open_windows: tuple[int, int],
        twins: Twins,
    ) -> int:
        """Remember the rows as seen, count them by label set and window; return how many."""
        fps, copies, had = fresh
        if max(seconds) <= last and twins is None:
            # A later request returns a row only if its range holds the time the API selects
            # the row by, which lay inside this range: so the row is kept until `last` leaves
            # the re-read horizon, whatever its own date.
            filed = [last] * len(seconds)
            self.seen.admit_many(fps, copies, had, filed)
        else:
            horizon = last + FUTURE_HORIZON
            filed = [last if s <= last else min(s, horizon) for s in seconds]
            if twins is not None:
                filed = _keep_for_twins(twins, seconds, filed)
            self.seen.admit_many(fps, copies, had, filed)
        repeated = any(had) or max(copies) > 1  # copies beyond the first, or counted before
        interval = self.interval
        windows = list(map(sub, seconds, map(mod, seconds, repeat(interval))))
        lo, hi = open_windows
        if min(windows) < lo or max(windows) > hi:
            self.counts.late += sum(compress(map(sub, copies, had), [w < lo for w in windows]))
            windows = [lo if w < lo else hi if w > hi else w for w in windows]
        # Each column read once: every pass over the records' attributes costs cache misses.
        channels = list(map(_CHANNEL, records))
        answers = list(map(_ANSWER, records))
        groups = Counter(zip(channels, map(_RP, records), answers, windows, strict=True))
        counted = len(records)
        if repeated:
            # Rows with copies beyond the first, or counted before, are rare: find them first.
            for i in compress(count(), map((1).__ne__, map(sub, copies, had))):
                r = records[i]
                groups[(r.channel, r.rp_id, r.routing_answer, windows[i])] += copies[i] - had[i] - 1
                counted += copies[i] - had[i] - 1
        transfers = self.ledger.add(groups, self.labels.group)
        who = list(map(_CUSTOMER, records))
        found = sessions_in(records, channels, answers, transfers)
        if found is not None:
            new = _admit(self.sessions, self.ledger, self.labels.channel, found, last)
            turns = list(map(sub, copies, had)) if repeated else [1] * len(records)
            talk = self.conversations  # a session's rows come back as long as its rows do
            rows = Rows.of(found.rows, seconds, answers, channels, who, turns, filed, talk.code)
            talk.add(rows, new)
        self.customers.file(who, channels, windows)
        return counted

    def publish(self, window_start: int, now: float, keep_from: int) -> None:
        """Expose the window that just completed as the last-window gauges (see
        `Ledger.publish`), with its distinct customers."""
        distinct = self.customers.distinct(window_start, self.labels.channel)
        if self.ledger.publish(window_start, now, keep_from, distinct):
            self.revision += 1
        self.customers.forget_before(keep_from)

    def forget_before(self, second: int) -> None:
        """Everything before `second` is collected: sessions end, what only re-reads need goes."""
        if self.conversations.end_before(second):
            self.revision += 1
        self.seen.forget_before(second)
        self.sessions.forget_before(second - self.session_horizon)
        # No row dated before `second` is read again, so customers of windows that ended before
        # it are complete; during a long catch-up (no publish until its end) they would pile up.
        self.customers.forget_before(second - 2 * self.interval)

    def export(self, sessions: bool = True) -> TallyState:
        """What a restart needs. Without `sessions`, the session store is left out: a live
        save writes only what it changed (`self.sessions.pending()`)."""
        buckets, transfers = self.sessions.image() if sessions else ({}, b"")
        talks, customers = self.conversations.image() if sessions else ({}, {})
        return msgspec.structs.replace(
            self.ledger.state(),
            rows_seen=self.seen.packed(),
            session_buckets=buckets,
            session_transfers=transfers,
            open_sessions=talks,
            recontact_customers=customers,
            session_channels=list(self.conversations.channels),
        )

    def pending(self) -> Changes:
        """The session changes since the last `saved()`, for a save that writes only those."""
        changes = self.sessions.pending()
        changes.conversations = self.conversations.pending()
        return changes

    def saved(self) -> None:
        self.sessions.saved()
        self.conversations.saved()

    def restore(self, saved: TallyState) -> None:
        """Resume from a saved state: counters continue, known rows stay known, and label
        values keep their names."""
        self.revision += 1
        self.ledger.restore(saved)
        for key in saved.counts.interactions:
            self.labels.admit(key)
        self.seen.load(saved.seen)
        self.seen.load_packed(saved.rows_seen)
        self.sessions.load(saved.session_buckets, [saved.session_transfers])
        self.conversations.load(saved)


def _admit(
    sessions: Sessions, ledger: Ledger, channel: Callable[[str], str], found: Found, last: int
) -> set[int]:
    """Count sessions new to us, and sessions whose first transfer is in these rows; return
    the new ones."""
    new, newly_transferred = sessions.admit(found.channels, found.transferred, last)
    raw = found.channels
    # Counted by raw channel in C, then labelled once per channel.
    ledger.add_sessions(
        _labelled(Counter(map(raw.__getitem__, new)), channel),
        _labelled(Counter(map(raw.__getitem__, newly_transferred)), channel),
    )
    return set(new)


def _labelled(by_raw: Counter[str], channel: Callable[[str], str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for raw, n in by_raw.items():
        out[channel(raw)] += n
    return out


def _outside(seconds: list[int], fresh: Fresh, first: int, last: int, result: Ingested) -> int:
    """Count the new copies of rows dated outside `[first, last]`, and how far out."""
    for second, n, had in zip(seconds, fresh[1], fresh[2], strict=True):
        if second < first:
            result.before = max(result.before, first - second)
        elif second > last:
            result.after = max(result.after, second - last)
        else:
            continue
        result.outside += n - had
    return result.outside


def countable(
    decoded: list[Record | str], fresh: Fresh, parse_date: DateParser
) -> tuple[list[Record], list[int], Fresh, list[tuple[str, bytes, int]]]:
    """The rows that can be counted, with their dates as epoch seconds, and the others as
    (reason, digest, copies). Uncountable rows are rare; set aside first, the rest runs
    column-wise, in C-level builtins rather than a Python loop per row."""
    rejects: list[tuple[str, bytes, int]] = []
    ok = cast(list[Record], decoded)
    if str in set(map(type, decoded)):  # rare: rows that could not be decoded
        ok = [row for row in decoded if not isinstance(row, str)]
        for fp, n, row in zip(fresh[0], fresh[1], decoded, strict=True):
            if isinstance(row, str):
                rejects.append((row, fp, n))
        fresh = keep_only(fresh, [not isinstance(row, str) for row in decoded])
    records: list[Record] = ok
    seconds = parse_date.many(list(map(_DATE, records)))
    if None in seconds:
        keep = [s is not None for s in seconds]
        for fp, n, kept in zip(fresh[0], fresh[1], keep, strict=True):
            if not kept:
                rejects.append(("invalid_date", fp, n))
        records = list(compress(records, keep))
        seconds = list(compress(seconds, keep))
        fresh = keep_only(fresh, keep)
    return records, cast(list[int], seconds), fresh, rejects


# Where clocks go back, the wall time of a span comes again: `(until, spans)`, every row of the
# answer kept at least `until`, and each span `(start, end, shift)` of repeated wall time.
Twins = tuple[int, list[tuple[int, int, int]]] | None


def _twins(zone: ZoneInfo, first: int, last: int, lowest: int, highest: int) -> Twins:
    """How long the rows of an answer to `[first, last]`, dated `lowest` to `highest`, may come
    back because of a fall-back; None (the usual case) if the answer touches no repeated span.

    An API that compares wall time returns, for a request in the second occurrence of a
    repeated hour, the rows of both occurrences. So a row returned by a range that reaches into
    a first occurrence comes back until the same wall time has passed the second time: it is
    kept until then, at least. A row dated in a repeated span is read as its first occurrence
    (DateParser), and kept until its second."""
    # Within two days of the range: a row dated further off (a broken clock) is no twin of
    # anything a later request asks for, and a span of years would cost a search per answer.
    reach = 2 * 86400
    lo, hi = max(min(first, lowest), first - reach), min(max(last, highest), last + reach)
    spans = windowing.repeated(lo, hi, zone)
    if not spans:
        return None
    until = max(
        (
            min(last, end - 1) + shift
            for start, end, shift in spans
            if first < end and start <= last
        ),
        default=last,
    )
    return until, spans


def _keep_for_twins(
    twins: tuple[int, list[tuple[int, int, int]]], seconds: list[int], filed: list[int]
) -> list[int]:
    until, spans = twins
    out = [max(f, until) for f in filed]
    for start, end, shift in spans:
        out = [
            max(f, s + shift) if start <= s < end else f for f, s in zip(out, seconds, strict=True)
        ]
    return out
