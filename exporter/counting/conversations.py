"""Conversations: the rows of a session followed to its end, and observed once when it ends.

A session is a non-empty session_id of an operation. It ends once every row up to
`session_timeout` after its last row has been collected and none of its rows can come back in
a re-read: judged against the collection cursor (`end_before`), never the wall clock, so a
live run, a catch-up and a backfill of the same rows end the same sessions with the same
figures. A row dated more than the timeout after the session's last row does not extend it:
the session ends there, as it stands, and that row (like any row of a session already ended)
counts in `rows_after_end`.

Memory is packed: an open session is one `bytes` of `_OPEN` in a dict keyed by its session
digest, and a customer of the re-contact window one int (`last << 2 | result`) keyed by a keyed
digest of who they are, so that the state database alone cannot be reversed into phone numbers
by trying them all. Both are saved by the change, so a save costs what a poll changed.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import tzinfo
from functools import cached_property
from itertools import compress, repeat
from operator import add, not_, or_, sub
from typing import TypeVar, cast

from exporter.api import windowing
from exporter.counting.counts import Counts, TallyState
from exporter.counting.journal import Journal
from exporter.counting.recontacts import Recontacts
from exporter.counting.wheel import Wheel
from exporter.settings.config import FALLBACK, Kpis
from exporter.settings.config import TRANSFERRED as TRANSFERRED_OUTCOME

_K = TypeVar("_K")
_V = TypeVar("_V")

RESULTS = ("transferred", "contained", "abandoned")
TRANSFERRED, CONTAINED, ABANDONED = range(3)
TURN_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34)
SECONDS_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600)

# A row's outcome as bits: a transfer, a fallback, an outcome that leaves the customer waiting.
IS_TRANSFER, IS_FALLBACK, AWAITS = 1, 2, 4
_TRANSFERS, _FALLBACKS, _AWAITING, _REPLIES = (
    frozenset(c for c in range(8) if test(c))
    for test in (
        lambda c: c & IS_TRANSFER,
        lambda c: c & IS_FALLBACK,
        lambda c: c & AWAITS,
        lambda c: not c & AWAITS,
    )
)

# An open session: first row's date, then relative to it: last row's date, the last second a
# re-read may still return one of its rows, its first transfer (-1: none); its rows; flags; its
# channel label (an index into `Conversations.channels`); its customer's keyed digest (0: none).
_OPEN = struct.Struct("<qiiiIBHQ")
OPEN_SIZE = _OPEN.size  # what the state store's journal holds per session beside its digest
_FALLBACK_SEEN, _LAST_AWAITS = 1, 2
_WHEEL = 60  # seconds per bucket of the end-time wheel
Spans = list[tuple[int, int, int]]  # repeated wall time: (start, end, shift)


@dataclass
class Open:
    """An open session, unpacked while it changes."""

    first: int
    last: int
    touched: int
    transfer: int  # the date of its first transfer, or -1
    turns: int
    flags: int
    channel: int
    customer: int

    @classmethod
    def unpack(cls, blob: bytes) -> Open:
        first, last, touched, transfer, turns, flags, channel, customer = _OPEN.unpack(blob)
        return cls(
            first,
            first + last,
            first + touched,
            -1 if transfer < 0 else first + transfer,
            turns,
            flags,
            channel,
            customer,
        )

    def pack(self) -> bytes:
        first = self.first
        transfer = -1 if self.transfer < 0 else self.transfer - first
        return _OPEN.pack(
            first,
            self.last - first,
            self.touched - first,
            transfer,
            min(self.turns, 0xFFFFFFFF),
            self.flags,
            self.channel,
            self.customer,
        )

    @property
    def result(self) -> int:
        if self.transfer >= 0:
            return TRANSFERRED
        return ABANDONED if self.flags & _LAST_AWAITS else CONTAINED

    def take(self, row: Part) -> None:
        """Merge rows of this session that lie within its timeout (see `Part`)."""
        if row.first < self.first:
            self.first, self.channel = row.first, row.channel
            if row.customer:
                self.customer = row.customer
        if not self.customer:
            self.customer = row.customer
        if row.last > self.last:
            self.last = row.last
            self.flags = (self.flags & ~_LAST_AWAITS) | (_LAST_AWAITS if row.awaits else 0)
        elif row.last == self.last and not row.awaits:
            self.flags &= ~_LAST_AWAITS
        if row.transfer >= 0 and (self.transfer < 0 or row.transfer < self.transfer):
            self.transfer = row.transfer
        if row.fallback:
            self.flags |= _FALLBACK_SEEN
        self.turns += row.turns
        self.touched = max(self.touched, row.touched)


@dataclass
class Part:
    """Rows of one session from one answer, summed: contiguous (no gap over the timeout)."""

    first: int
    last: int
    turns: int
    transfer: int
    fallback: bool
    awaits: bool  # every row dated at `last` leaves the customer waiting
    channel: int
    customer: int
    touched: int

    def start(self) -> Open:
        flags = (_FALLBACK_SEEN if self.fallback else 0) | (_LAST_AWAITS if self.awaits else 0)
        return Open(
            self.first,
            self.last,
            self.touched,
            self.transfer,
            self.turns,
            flags,
            self.channel,
            self.customer,
        )


@dataclass
class Rows:
    """The rows of an answer newly counted that belong to a session, as columns."""

    keys: list[int]  # session digest
    seconds: list[int]  # date
    codes: list[int]  # outcome bits
    channels: list[str]  # raw channel
    customers: list[object]  # who (raw: id, else phone, else e-mail); digested here
    turns: list[int]  # copies newly counted
    touched: list[int]  # the last second a re-read may return it

    @classmethod
    def of(
        cls,
        keys: list[int | None],
        seconds: list[int],
        answers: list[str | None],
        channels: list[str],
        customers: list[object],
        turns: list[int],
        touched: list[int],
        code: Callable[[str | None], int],
    ) -> Rows:
        """The rows that have a session (the others stay out of session figures), from the
        columns of the records counted."""
        codes_of = {a: code(a) for a in set(answers)}
        codes = list(map(codes_of.__getitem__, answers))
        rows = cls(cast(list[int], keys), seconds, codes, channels, customers, turns, touched)
        return rows.only([k is not None for k in keys]) if None in keys else rows

    def part(self, i: int, channel: int, customer: int) -> Part:
        """Row i alone, as a part of its session."""
        second, code = self.seconds[i], self.codes[i]
        transfer = second if code & IS_TRANSFER else -1
        fallback, awaits = bool(code & IS_FALLBACK), bool(code & AWAITS)
        turns, touched = self.turns[i], self.touched[i]
        return Part(second, second, turns, transfer, fallback, awaits, channel, customer, touched)

    def only(self, keep: list[bool]) -> Rows:
        return Rows(
            list(compress(self.keys, keep)),
            list(compress(self.seconds, keep)),
            list(compress(self.codes, keep)),
            list(compress(self.channels, keep)),
            list(compress(self.customers, keep)),
            list(compress(self.turns, keep)),
            list(compress(self.touched, keep)),
        )

    def ordered(self) -> Rows:
        """The rows in date order (an answer's usually are already)."""
        seconds = self.seconds
        if not any(map(int.__gt__, seconds, seconds[1:])):
            return self
        order = sorted(range(len(seconds)), key=seconds.__getitem__)
        return Rows(
            [self.keys[i] for i in order],
            [seconds[i] for i in order],
            [self.codes[i] for i in order],
            [self.channels[i] for i in order],
            [self.customers[i] for i in order],
            [self.turns[i] for i in order],
            [self.touched[i] for i in order],
        )


@dataclass
class Changes:
    """What a save must write of the conversations since the last one: a journal entry of the
    sessions (see `journal`), and the customers. The database files a customer by their last
    session's end, so that a poll's changes fall on its newest pages (see `state.store`)."""

    sessions: dict[int, bytes] = field(default_factory=dict)  # open, changed
    gone: set[int] = field(default_factory=set)  # ended
    generation: int = 0  # of the journal entry
    drop_before: int | None = None  # journal generations before it are gone
    customers: dict[int, int] = field(default_factory=dict)
    customers_floor: int | None = None  # customers filed under an earlier second are forgotten


class Conversations:
    """One operation's open sessions and its customers of the re-contact window."""

    def __init__(
        self,
        counts: Callable[[], Counts],
        kpis: Kpis,
        secret: bytes,
        outcome: Callable[[str | None], str],
        label: Callable[[str], str],
        zone: tzinfo,
    ) -> None:
        """`counts` gives the counts to add to; `outcome` a raw routing answer's outcome,
        `label` a raw channel's label value."""
        self._counts = counts
        self.timeout = int(kpis.session_timeout)
        self.horizon = int(kpis.session_horizon)
        self.code = Codes(outcome, frozenset(kpis.awaiting_outcomes))  # a raw answer's bits
        self._label = label
        self.customer_key = CustomerKey(secret)
        self.open: dict[int, bytes] = {}
        self.recontacts = Recontacts(int(kpis.recontact_window), self.horizon)
        self.channels: list[str] = []  # channel labels, indexed by the packed sessions
        self._channel_index: dict[str, int] = {}
        self._due = Wheel(_WHEEL)  # session digests by the minute they may end in
        self._zone = zone
        self._spans: Spans = []  # repeated spans near the work at hand
        self._changes = Changes()
        self._journal = Journal()

    def __len__(self) -> int:
        return len(self.open)

    def channel_index(self, label: str) -> int:
        if (index := self._channel_index.get(label)) is None:
            index = self._channel_index[label] = len(self.channels)
            self.channels.append(label)
        return index

    def add(self, rows: Rows, new: set[int]) -> None:
        """Follow the rows of sessions; `new` are the sessions never seen before (the others
        are open, or ended: their rows count after the end). New sessions start in bulk, open
        ones merge in one pass, those a gap may split go row by row."""
        rows = rows.ordered()
        end = rows.seconds[-1] + self.timeout
        self._spans = windowing.repeated(rows.seconds[0], end, self._zone)
        s = Summary.of(rows)
        label, timeout, open_ = self._label, self.timeout, self.open
        is_open = list(map(open_.__contains__, s.keys))
        short = list(map(timeout.__ge__, map(sub, s.last, s.first)))
        # New, not open (a gap may have opened one already), their rows within one timeout.
        wanted = zip(map(new.__contains__, s.keys), map(not_, is_open), short, strict=True)
        fast = list(map(all, wanted))
        if any(fast):
            self._start(s.only(fast))
        after = self._counts().session_rows_after_end
        slow: dict[int, None] = {}
        left: list[int] = []
        if any(is_open):  # sessions open before: most of a live poll's
            merged, left = _merge(open_, s.only(is_open), timeout)
            self._changes.sessions.update(dict.fromkeys(merged, b""))
        for i in compress(range(len(s.keys)), map(not_, map(or_, is_open, fast))):
            key = s.keys[i]
            if key not in new:  # ended: its rows come after the end
                name = label(s.channel[i])
                after[name] = after.get(name, 0) + s.turns[i]
            else:
                slow[key] = None  # rows further apart than the timeout
        at = s.at if left else {}
        for key in left:
            i = at[key]
            state = Open.unpack(open_[key])
            # Rows within the timeout around it, themselves within one timeout: no gap.
            if short[i] and state.first - timeout <= s.first[i] <= state.last + timeout:
                who = s.customer[i]
                channel = self.channel_index(label(s.channel[i]))
                state.take(s.part(i, channel, 0 if who is None else self.customer_key(who)))
                self._store(key, state)
            else:
                slow[key] = None
        if slow:
            self._one_by_one(rows, slow, new)

    def _start(self, s: Summary) -> None:
        """Open new sessions in bulk, column-wise."""
        label, index, keys = self._label, self.channel_index, s.keys
        by_raw = {raw: index(label(raw)) for raw in set(s.channel)}
        channels = list(map(by_raw.__getitem__, s.channel))
        blobs, due = s.pack(channels, self.customer_key, self.timeout, self.horizon)
        if self._spans:  # near a fall-back (twice a year at most): each one's own deadline
            due = list(map(self._due_at, s.first, s.last, s.touched))
        self.open.update(zip(keys, blobs, strict=True))
        self._changes.sessions.update(dict.fromkeys(keys, b""))
        self._due.file_many(keys, due)
        sessions_open, names = self._counts().sessions_open, self.channels
        for c, n in Counter(channels).items():
            sessions_open[names[c]] = sessions_open.get(names[c], 0) + n

    def _one_by_one(self, rows: Rows, slow: dict[int, None], new: set[int]) -> None:
        """The rows of sessions a gap may split, in date order, one at a time. A session
        opened here is counted open at once: a later row of the same answer may end it."""
        label = self._label
        picked = [i for i, key in enumerate(rows.keys) if key in slow]
        after = self._counts().session_rows_after_end
        for i in picked:
            key, second, who = rows.keys[i], rows.seconds[i], rows.customers[i]
            customer = self.customer_key(who) if somebody(who) else 0
            part = rows.part(i, self.channel_index(label(rows.channels[i])), customer)
            blob = self.open.get(key)
            state = None if blob is None else Open.unpack(blob)
            if state is None and key in new:
                new.discard(key)  # its later rows join it, or come after its end
                self._store(key, part.start())
                _add(self._counts().sessions_open, self.channels[part.channel])
            elif state is None or not (
                state.first - self.timeout <= second <= state.last + self.timeout
            ):
                if state is not None and second > state.last + self.timeout:
                    self._end(key, state, expired=False)
                name = label(rows.channels[i])
                after[name] = after.get(name, 0) + rows.turns[i]
            else:
                state.take(part)
                self._store(key, state)

    def _store(self, key: int, state: Open) -> None:
        """Keep a session open as changed, and file it under the second it may end at."""
        self.open[key] = state.pack()
        self._changes.sessions[key] = b""
        self._due.file(key, self._due_at(state.first, state.last, state.touched))

    def _due_at(self, first: int, last: int, touched: int) -> int:
        """When a session may end: quiet for good, or its horizon passed."""
        return min(quiet_after(last, touched, self.timeout, self._spans), first + self.horizon)

    def end_before(self, second: int) -> int:
        """End every session none of whose rows can still come: every row dated before
        `second` has been collected for good. A session open past the horizon ends as it
        stands, counted as expired. Returns how many ended."""
        ending: list[tuple[int, int, Open, bool]] = []
        self._spans = windowing.repeated(second - self.horizon, second + self.horizon, self._zone)
        reach = self._journal.reach
        for filed in self._due.before(second):
            for key in filed:
                blob = self.open.get(key)
                if blob is None:
                    continue
                state = Open.unpack(blob)
                expired = state.first + self.horizon < second
                due = self._due_at(state.first, state.last, state.touched)
                if expired or due < second:
                    ending.append((state.last, key, state, expired))
                    del self.open[key]  # once, though filed in several buckets
                else:
                    self._due.file(key, due)
                    if reach is not None and due >= reach:  # where the image does not read
                        self._changes.sessions[key] = b""
        # In date order: a customer's earlier session is the one their later one compares with.
        ending.sort(key=lambda e: (e[0], e[1]))
        for _, key, state, expired in ending:
            self._end(key, state, expired)
        self.recontacts.forget_before(second)
        return len(ending)

    def _end(self, key: int, state: Open, expired: bool) -> None:
        """Observe a session once, and its customer's re-contact."""
        self.open.pop(key, None)
        self._changes.sessions.pop(key, None)
        self._changes.gone.add(key)  # saved before, perhaps
        counts = self._counts()
        label = self.channels[state.channel]
        observe(counts, label, state, expired)
        if state.customer:
            result = state.result
            previous = self.recontacts.ended(state.customer, state.first, state.last, result)
            if previous is not None:
                _add(counts.sessions_recontact, (label, RESULTS[previous]))

    def pending(self) -> Changes:
        """What changed since the last `saved()`, ready to write."""
        entry = self._journal.plan(self.open, self._changes.sessions, self._changes.gone, self._due)
        return Changes(
            entry.sessions,
            entry.ended,
            entry.generation,
            entry.drop_before,
            *self.recontacts.pending(),
        )

    def saved(self) -> None:
        self._changes = Changes()
        self._journal.saved()
        self.recontacts.saved()

    def image(self) -> tuple[dict[int, bytes], dict[int, int]]:  # a copy of everything
        return dict(self.open), dict(self.recontacts.customers)

    def load(self, saved: TallyState) -> None:
        """Resume from saved open sessions and customers (channel labels by index)."""
        for label in saved.session_channels:
            self.channel_index(label)
        for key, blob in saved.open_sessions.items():
            self.open[key] = blob
            state = Open.unpack(blob)
            self._due.file(key, self._due_at(state.first, state.last, state.touched))
        self.recontacts.load(saved.recontact_customers)
        self._journal.loaded(saved.journal_generation, saved.journal_entries)
        self._changes = Changes()


@dataclass
class Summary:
    """Each session's rows of one answer summed, as columns in the order sessions first
    appear (`keys`), found in C-level passes over the date-ordered rows. In a live poll a
    session has one row per answer (a 5 s window holds one message of a conversation), and the
    columns are then the rows' own."""

    keys: list[int]
    first: list[int]
    last: list[int]
    channel: list[str]
    turns: list[int]
    transfer: list[int]  # its first transfer's date, or -1
    fallback: list[bool]
    awaits: list[bool]  # every row at its last second leaves the customer waiting
    customer: list[object]  # who (raw), or None
    touched: list[int]

    @classmethod
    def of(cls, rows: Rows) -> Summary:
        keys, seconds, codes, n = rows.keys, rows.seconds, rows.codes, len(rows.keys)
        last_at = dict(zip(keys, range(n), strict=True))
        if len(last_at) == n:  # one row per session
            return cls._single(rows)
        # Each session's first and last row, found once: its other columns are read there.
        first_at = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
        order = list(last_at)
        fi = list(map(first_at.__getitem__, order))
        li = list(map(last_at.__getitem__, order))
        last = list(map(seconds.__getitem__, li))
        turns: Counter[int] = Counter(keys)
        if max(rows.turns) != 1:  # rows repeated, or counted before: few, walked one by one
            for i in compress(range(n), map((1).__ne__, rows.turns)):
                turns[keys[i]] += rows.turns[i] - 1
        touched = rows.touched
        if touched.count(touched[0]) == n:
            latest = [touched[0]] * len(order)
        else:
            latest = list(map(_latest(keys, touched).__getitem__, order))
        # Masks of codes through set look-ups: C-level passes, where `c & bit` would be a
        # Python loop over every row.
        transfer = _firsts(keys, seconds, list(map(_TRANSFERS.__contains__, codes)))
        fallback = set(compress(keys, map(_FALLBACKS.__contains__, codes)))
        customer = _customers(rows, order, fi)
        return cls(
            keys=order,
            first=list(map(seconds.__getitem__, fi)),
            last=last,
            channel=list(map(rows.channels.__getitem__, fi)),
            turns=list(map(turns.__getitem__, order)),
            transfer=list(map(transfer.get, order, repeat(-1))),
            fallback=list(map(fallback.__contains__, order)),
            awaits=_awaiting(rows, order, list(map(codes.__getitem__, li)), last),
            customer=list(map(customer.get, order)),
            touched=latest,
        )

    @classmethod
    def _single(cls, rows: Rows) -> Summary:
        """The columns of rows that are each their session's only one (shared with `rows`:
        a summary is read, never written)."""
        seconds, codes, n = rows.seconds, rows.codes, len(rows.keys)
        transfer = [-1] * n
        for i in compress(range(n), map(_TRANSFERS.__contains__, codes)):  # a few rows
            transfer[i] = seconds[i]
        who = rows.customers
        known = list(map(somebody, who))
        return cls(
            keys=rows.keys,
            first=seconds,
            last=seconds,
            channel=rows.channels,
            turns=rows.turns,
            transfer=transfer,
            fallback=list(map(_FALLBACKS.__contains__, codes)),
            awaits=list(map(_AWAITING.__contains__, codes)),
            customer=who
            if all(known)
            else [w if k else None for w, k in zip(who, known, strict=True)],
            touched=rows.touched,
        )

    @cached_property
    def at(self) -> dict[int, int]:
        """Each session's index in the columns."""
        return dict(zip(self.keys, range(len(self.keys)), strict=True))

    def only(self, keep: list[bool]) -> Summary:
        """The sessions `keep` marks."""
        return Summary(*(list(compress(getattr(self, f.name), keep)) for f in fields(Summary)))

    def pack(
        self,
        channels: list[int],
        customer_key: Callable[[object], int],
        timeout: int,
        horizon: int,
    ) -> tuple[list[bytes], list[int]]:
        """The sessions packed as new open ones, column-wise, and the second each may end at."""
        firsts, lasts, touched = self.first, self.last, self.touched
        customers = [0 if who is None else customer_key(who) for who in self.customer]
        flags = list(
            map(
                add,
                map(_FALLBACK_SEEN.__mul__, self.fallback),
                map(_LAST_AWAITS.__mul__, self.awaits),
            )
        )
        blobs = list(
            map(
                _OPEN.pack,
                firsts,
                map(sub, lasts, firsts),
                map(sub, touched, firsts),
                [-1 if t < 0 else t - f for t, f in zip(self.transfer, firsts, strict=True)],
                self.turns,
                flags,
                channels,
                customers,
            )
        )
        due = [
            min(max(la + timeout, t), f + horizon)
            for f, la, t in zip(firsts, lasts, touched, strict=True)
        ]
        return blobs, due

    def part(self, i: int, channel: int, customer: int) -> Part:
        return Part(
            self.first[i],
            self.last[i],
            self.turns[i],
            self.transfer[i],
            self.fallback[i],
            self.awaits[i],
            channel,
            customer,
            self.touched[i],
        )


def _merge(open_: dict[int, bytes], s: Summary, timeout: int) -> tuple[list[int], list[int]]:
    """Merge the rows of sessions already open (packed in `open_`, by digest) in one pass
    over their columns, without unpacking them into objects. Returns the keys merged, and
    those left for `add`'s own loop: rows spanning more than the timeout or dated away
    from the session (a gap may split them), a row before the session's first (it moves
    where the session is filed), a first customer.

    A merged session stays filed on the end-time wheel where it was: its end can only
    have moved later, and `end_before` files again a session found not quiet yet."""
    left: list[int] = []
    merged: list[int] = []
    blobs: list[bytes] = []
    # Bound once: this loop runs once per session of every live poll.
    pack, keep, note = _OPEN.pack, blobs.append, merged.append
    waits, not_waits = _LAST_AWAITS, ~_LAST_AWAITS
    for key, state, pf, pl, transfer, turns, touched, fallback, awaits, who in zip(
        s.keys,
        map(_OPEN.unpack, map(open_.__getitem__, s.keys)),
        s.first,
        s.last,
        s.transfer,
        s.turns,
        s.touched,
        s.fallback,
        s.awaits,
        s.customer,
        strict=True,
    ):
        first, last, seen, moved, n, flags, channel, customer = state
        last += first
        if (
            pl - pf > timeout
            or not first <= pf <= last + timeout
            or (not customer and who is not None)
        ):
            left.append(key)
            continue
        if pl > last:
            last = pl
            flags = flags & not_waits | (waits if awaits else 0)
        elif pl == last and not awaits:
            flags &= not_waits
        if transfer >= 0 and (moved < 0 or transfer - first < moved):
            moved = transfer - first
        if fallback:
            flags |= _FALLBACK_SEEN
        if touched - first > seen:
            seen = touched - first
        n += turns
        if n > 0xFFFFFFFF:
            n = 0xFFFFFFFF
        keep(pack(first, last - first, seen, moved, n, flags, channel, customer))
        note(key)
    open_.update(zip(merged, blobs, strict=True))
    return merged, left


def _awaiting(rows: Rows, order: list[int], codes: list[int], last: list[int]) -> list[bool]:
    """Whether each session's rows at its last second all leave the customer waiting: its
    last row does, and no row of it that does not is at that second too."""
    waiting = list(map(_AWAITING.__contains__, codes))
    if not any(waiting):
        return waiting
    replied = list(map(_REPLIES.__contains__, rows.codes))
    answered = dict(
        zip(compress(rows.keys, replied), compress(rows.seconds, replied), strict=False)
    )
    return [w and answered.get(k) != t for k, w, t in zip(order, waiting, last, strict=True)]


def _customers(rows: Rows, order: list[int], fi: list[int]) -> dict[int, object]:
    """Each session's customer: that of its first row, else of its first row with one."""
    at_first = list(map(rows.customers.__getitem__, fi))
    known = list(map(somebody, at_first))
    customer = dict(zip(compress(order, known), compress(at_first, known), strict=False))
    if len(customer) < len(order):  # a first row without one: look further (rare)
        has = list(map(somebody, rows.customers))
        customer = {**_firsts(rows.keys, rows.customers, has), **customer}
    return customer


def _firsts(keys: list[int], values: list[_V], mask: Sequence[object]) -> dict[int, _V]:
    """Each key's value on its first row (rows in date order) among those `mask` keeps."""
    picked, kept = list(compress(keys, mask)), list(compress(values, mask))
    return dict(zip(reversed(picked), reversed(kept), strict=True))


def _latest(keys: list[int], seconds: list[int]) -> dict[int, int]:
    """Each key's largest second."""
    if not any(map(int.__gt__, seconds, seconds[1:])):
        return dict(zip(keys, seconds, strict=True))
    out: dict[int, int] = {}
    for key, t in zip(keys, seconds, strict=True):
        out[key] = max(t, out.get(key, t))
    return out


def quiet_after(last: int, touched: int, timeout: int, spans: Spans) -> int:
    """The second after which no row of a session whose last row is dated `last` can come.
    Where clocks go back, a row of the repeated hour's second occurrence reads as its first
    (DateParser): if the timeout after `last` reaches into a first occurrence (`spans`, from
    windowing.repeated), rows read as dated there may come until the same wall time has passed
    the second time."""
    quiet = max(last + timeout, touched)
    for start, end, shift in spans:
        if start <= last + timeout and last < end:
            quiet = max(quiet, min(last + timeout, end - 1) + shift)
    return quiet


def somebody(who: object) -> bool:
    """Whether a customer field names someone: None, "" and 0 (an id sent as a number) do not."""
    return who is not None and who != "" and who != 0


def customer_key(secret: bytes, who: object) -> int:
    """The keyed digest a customer is remembered by; never 0 (0 means nobody)."""
    return CustomerKey(secret)(who)


class CustomerKey:
    """`customer_key` with its secret: keyed BLAKE2b started once and copied per customer,
    which costs half a keyed start (the key is a block of its own) for every session."""

    def __init__(self, secret: bytes) -> None:
        self._keyed = hashlib.blake2b(digest_size=8, key=secret)

    def __call__(self, who: object) -> int:
        digest = self._keyed.copy()
        digest.update((who if isinstance(who, str) else str(who)).encode())
        return int.from_bytes(digest.digest(), "little") or 1


class Codes:
    """A raw routing answer's outcome as the bits the session figures read."""

    def __init__(self, outcome: Callable[[str | None], str], awaiting: frozenset[str]) -> None:
        self.outcome = outcome
        self.awaiting = awaiting

    def __call__(self, answer: str | None) -> int:
        outcome = self.outcome(answer)
        return (
            (IS_TRANSFER if outcome == TRANSFERRED_OUTCOME else 0)
            | (IS_FALLBACK if outcome == FALLBACK else 0)
            | (AWAITS if outcome in self.awaiting else 0)
        )


def observe(counts: Counts, label: str, state: Open, expired: bool) -> None:
    """Add an ended session to the figures: its result, turns, duration, time to transfer,
    fallback, and whether it expired."""
    _add(counts.sessions_ended, (label, RESULTS[state.result]))
    counts.sessions_open[label] = counts.sessions_open.get(label, 1) - 1
    _observe(counts.session_turns, counts.session_turns_sum, label, TURN_BUCKETS, state.turns)
    duration = state.last - state.first
    _observe(counts.session_duration, counts.session_duration_sum, label, SECONDS_BUCKETS, duration)
    if state.transfer >= 0:
        waited = state.transfer - state.first
        _observe(
            counts.session_time_to_transfer,
            counts.session_time_to_transfer_sum,
            label,
            SECONDS_BUCKETS,
            waited,
        )
    if state.flags & _FALLBACK_SEEN:
        _add(counts.sessions_with_fallback, label)
    if expired:
        _add(counts.sessions_expired, label)


def _add(totals: dict[_K, int], key: _K) -> None:
    totals[key] = totals.get(key, 0) + 1


def _observe(
    buckets: dict[tuple[str, int], int],
    sums: dict[str, float],
    label: str,
    bounds: tuple[int, ...],
    value: int,
) -> None:
    index = bisect_left(bounds, value)
    buckets[(label, index)] = buckets.get((label, index), 0) + 1
    sums[label] = sums.get(label, 0.0) + value
