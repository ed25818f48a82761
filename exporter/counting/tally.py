"""Counting decoded records into label sets, each row exactly once.

One `Tally` per operation: the hot path from an answer's rows to its `counts.Ledger`. It owns the
dedupe store, the dates, the label values (`labels.Labeler`) and the session and customer
memories; it does no I/O and takes no locks (the poller serialises access), so it can be tested
and benchmarked on its own.
"""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass
from itertools import compress, count, groupby, repeat
from operator import attrgetter, itemgetter, mod, sub
from typing import Any, cast

import msgspec

from exporter.api.records import Answer, DateParser, Record, decode_rows, fingerprint
from exporter.counting import labels
from exporter.counting.counts import Counts, Ledger, TallyState
from exporter.counting.labels import LabelKey
from exporter.counting.seen import SeenRows, Sessions, session_keys
from exporter.settings.config import OperationSettings

__all__ = ["Ingested", "LabelKey", "Tally"]

_SESSION_ID = attrgetter("session_id")
_CHANNEL = attrgetter("channel")
_ANSWER = attrgetter("routing_answer")
_DATE = attrgetter("date")
_RP = attrgetter("rp_id")
_CUSTOMER = attrgetter("customer")
_FIRST = itemgetter(0)
_REST = itemgetter(1, 2)
# The hash of "no customer": None, "" and 0 (an id field sent as a number) are nobody.
_NOBODY = frozenset({hash(None), hash(""), hash(0)})

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

    def __init__(self, settings: OperationSettings) -> None:
        self.interval = settings.interval
        kpis = settings.kpis
        self.session_horizon = int(kpis.session_horizon)
        self.labels = labels.Labeler(settings.labels, kpis)
        self.outcome_names = self.labels.classify.names
        self.ledger = Ledger(settings.labels.last_window_retention)
        self.parse_date = DateParser(settings.zone)
        self.seen = SeenRows()
        self.sessions = Sessions()
        # (raw channel, customer hash) by window start, of the open windows; memory only, never
        # saved. Keyed by window so that publishing and expiry touch one window, not every row.
        self.customers: dict[int, set[tuple[str, int]]] = {}

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
        rows = answer.rows
        fps = [fingerprint(raw) for raw in rows]
        copies = Counter(fps)
        known = self.seen.copies
        # Each digest with copies not counted yet, how many copies now, and how many before.
        fresh: Fresh
        if not known or known.keys().isdisjoint(copies):
            fresh = (list(copies), list(copies.values()), [0] * len(copies))  # a first read
        else:
            fresh = _columns(
                [(fp, n, had) for fp, n in copies.items() if n > (had := known.get(fp, 0))]
            )
        decoded: list[Record | str]
        if len(fresh[0]) == len(rows):
            # Every row distinct and new (a first read): `fresh` is in row order already.
            decoded = answer.decode_all()
        elif len(fresh[0]) == len(copies):
            # Every distinct row is fresh, some repeated: keep each digest's first occurrence,
            # which is the order of `copies` and so of `fresh`.
            decoded = list(compress(answer.decode_all(), _first_occurrences(fps, copies)))
        else:
            index = dict(zip(fps, range(len(fps)), strict=True))  # equal digests, equal bytes
            if 2 * len(fresh[0]) > len(rows):
                everything = answer.decode_all()
                decoded = [everything[index[fp]] for fp in fresh[0]]
            else:
                decoded = decode_rows([rows[index[fp]] for fp in fresh[0]])
        # Uncountable rows are rare; set them aside first so that the rest runs column-wise,
        # in C-level builtins rather than a Python loop per row.
        records, seconds, fresh = self._countable(decoded, fresh, last, result)
        if records:
            lowest, highest = min(seconds), max(seconds)
            if lowest < first or highest > last:
                self._outside(seconds, fresh, first, last, result)
            counts = self.counts
            if counts.newest is None or highest > counts.newest:
                counts.newest = highest
            if windows is None:
                windows = (first - first % self.interval, last - last % self.interval)
            result.counted = self._file(records, seconds, fresh, last, windows)
        result.duplicates = result.received - result.counted - result.rejected
        self.counts.received += result.received
        self.counts.duplicates += result.duplicates
        return result

    def _countable(
        self,
        decoded: list[Record | str],
        fresh: Fresh,
        last: int,
        result: Ingested,
    ) -> tuple[list[Record], list[int], Fresh]:
        """The rows that can be counted, with their dates as epoch seconds; every other row is
        counted as rejected, once, by reason."""
        ok = cast(list[Record], decoded)
        if str in set(map(type, decoded)):  # rare: rows that could not be decoded
            ok = [row for row in decoded if not isinstance(row, str)]
            for fp, n, row in zip(fresh[0], fresh[1], decoded, strict=True):
                if isinstance(row, str):
                    self._reject(row, fp, n, last, result)
            fresh = _kept(fresh, [not isinstance(row, str) for row in decoded])
        records: list[Record] = ok
        seconds = self.parse_date.many(list(map(_DATE, records)))
        if None in seconds:
            keep = [s is not None for s in seconds]
            for fp, n, kept in zip(fresh[0], fresh[1], keep, strict=True):
                if not kept:
                    self._reject("invalid_date", fp, n, last, result)
            records = list(compress(records, keep))
            seconds = list(compress(seconds, keep))
            fresh = _kept(fresh, keep)
        return records, cast(list[int], seconds), fresh

    def _outside(
        self, seconds: list[int], fresh: Fresh, first: int, last: int, result: Ingested
    ) -> None:
        """Count the new copies of rows dated outside `[first, last]`, and how far out."""
        for second, n, had in zip(seconds, fresh[1], fresh[2], strict=True):
            if second < first:
                result.before = max(result.before, first - second)
            elif second > last:
                result.after = max(result.after, second - last)
            else:
                continue
            result.outside += n - had
        self.counts.outside_range += result.outside

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
    ) -> int:
        """Remember the rows as seen, count them by label set and window; return how many."""
        fps, copies, had = fresh
        if max(seconds) <= last:
            # A later request returns a row only if its range holds the time the API selects
            # the row by, which lay inside this range: so the row is kept until `last` leaves
            # the re-read horizon, whatever its own date.
            self.seen.admit_many(fps, copies, had, [last] * len(seconds))
        else:
            horizon = last + FUTURE_HORIZON
            filed = [last if s <= last else min(s, horizon) for s in seconds]
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
            for i in [i for i, n, h in zip(count(), copies, had) if n - h != 1]:
                r = records[i]
                groups[(r.channel, r.rp_id, r.routing_answer, windows[i])] += copies[i] - had[i] - 1
                counted += copies[i] - had[i] - 1
        transfers = self.ledger.add(groups, self.labels.group)
        self._sessions(records, channels, answers, transfers, last)
        self._customers(records, channels, windows)
        return counted

    def _sessions(
        self,
        rows: list[Record],
        channels: list[str],
        answers: list[str | None],
        transfers: set[str | None],
        last: int,
    ) -> None:
        """Count sessions new to us, and sessions whose first transfer is in these rows.

        Per-record work is done column-wise by C-level builtins; Python code runs once per
        distinct session (digest). `transfers` are the raw answers whose outcome is a transfer,
        found while counting label sets.
        """
        sids = list(map(_SESSION_ID, rows))
        # A session's channel is that of its records (the last one read, should they differ).
        try:
            first = dict(zip(sids, channels, strict=True))
        except TypeError:  # a JSON list or object as session_id
            sids = _hashable(sids)
            first = dict(zip(sids, channels, strict=True))
        first.pop(None, None)
        first.pop("", None)
        if not first:
            return
        digests = dict(zip(session_keys(first), first.values(), strict=True))
        moved: set[int] = set()
        if transfers:
            with_transfer = compress(sids, map(transfers.__contains__, answers))
            moved = set(session_keys(set(with_transfer) - {None, ""}))
        new, newly_transferred = self.sessions.admit(digests, moved, last)
        channel = self.labels.channel
        self.ledger.add_sessions(map(channel, new), map(channel, newly_transferred))

    def _customers(self, rows: list[Record], channels: list[str], windows: list[int]) -> None:
        """File each record's customer (id, else phone, else e-mail) under its window, hashed.

        Python's salted string hash is enough: the hashes only need to be distinct within this
        process, and are never saved or exposed.
        """
        who = list(map(_CUSTOMER, rows))
        try:
            hashes = list(map(hash, who))
        except TypeError:  # a JSON list or object in a customer field
            hashes = list(map(hash, _hashable(who)))
        # Rows come in date order, so windows come in long runs: one set update per run.
        customers = self.customers
        for window, run in groupby(zip(windows, channels, hashes, strict=True), key=_FIRST):
            filed = customers.get(window)
            if filed is None:
                filed = customers[window] = set()
            filed.update(map(_REST, run))

    def publish(self, window_start: int, now: float, keep_from: int) -> None:
        """Expose the window that just completed as the last-window gauges (see
        `Ledger.publish`), with its distinct customers."""
        channel = self.labels.channel
        distinct = {
            (channel(ch), who)
            for ch, who in self.customers.get(window_start, ())
            if who not in _NOBODY
        }
        self.ledger.publish(window_start, now, keep_from, Counter(ch for ch, _ in distinct))
        self._forget_customers_before(keep_from)

    def forget_before(self, second: int) -> None:
        self.seen.forget_before(second)
        self.sessions.forget_before(second - self.session_horizon)
        # No row dated before `second` is read again, so customers of windows that ended before
        # it are complete; during a long catch-up (no publish until its end) they would pile up.
        self._forget_customers_before(second - 2 * self.interval)

    def _forget_customers_before(self, window_start: int) -> None:
        for start in [w for w in self.customers if w < window_start]:
            del self.customers[start]

    def export(self, sessions: bool = True) -> TallyState:
        """What a restart needs. Without `sessions`, the session store is left out: a live
        save writes only what it changed (`self.sessions.pending()`)."""
        buckets, transfers = self.sessions.image() if sessions else ({}, b"")
        return msgspec.structs.replace(
            self.ledger.state(),
            seen=list(self.seen.items()),
            session_buckets=buckets,
            session_transfers=transfers,
        )

    def restore(self, saved: TallyState) -> None:
        """Resume from a saved state: counters continue, known rows stay known, and label
        values keep their names."""
        self.ledger.restore(saved)
        for key in saved.counts.interactions:
            self.labels.admit(key)
        self.seen.load(saved.seen)
        self.sessions.load(saved.session_buckets, [saved.session_transfers])


# The rows of an answer with copies not counted yet, as columns: digest, copies in this answer,
# copies counted before.
Fresh = tuple[list[bytes], list[int], list[int]]


def _columns(rows: list[tuple[bytes, int, int]]) -> Fresh:
    if not rows:
        return [], [], []
    fps, copies, had = zip(*rows, strict=True)
    return list(fps), list(copies), list(had)


def _first_occurrences(fps: list[bytes], copies: Counter[bytes]) -> list[bool]:
    """A mask of the rows that are the first of their digest; only repeated digests are looked
    at one by one, as they are few."""
    keep = [True] * len(fps)
    repeated = {fp for fp, n in copies.items() if n > 1}
    seen: set[bytes] = set()
    for i in compress(range(len(fps)), map(repeated.__contains__, fps)):
        if fps[i] in seen:
            keep[i] = False
        else:
            seen.add(fps[i])
    return keep


def _kept(fresh: Fresh, keep: list[bool]) -> Fresh:
    fps, copies, had = fresh
    return list(compress(fps, keep)), list(compress(copies, keep)), list(compress(had, keep))


def _hashable(values: list[Any]) -> list[Any]:
    """Values as dictionary keys: JSON lists and objects by their text, everything else (None
    included, which means "absent") unchanged."""
    return [v if v is None or isinstance(v, str | int | float) else str(v) for v in values]
