"""What is counted, as one typed model, and the book that keeps it between polls.

`Counts` is at once what a tally adds to, what a snapshot carries to /metrics and what the state
database stores: a new counter is a field here, the line of the tally that adds to it, and a row
in `families.OPERATION` that reads it. Strict mypy checks every field along that way, and no
code lists the fields again (a snapshot copies them generically, the store encodes the struct).

`Ledger` holds the Counts of one operation together with what only continuing them needs: the
counts of windows still open to late rows, and when each label set last had traffic. It does no
decoding, no dedupe and no label normalising; `aggregation.Tally` feeds it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import msgspec

from exporter.counting.labels import LIMITED_LABELS, LabelKey, Labelled, RawGroup
from exporter.settings.config import TRANSFERRED

REJECT_REASONS = ("undecodable", "missing_field", "invalid_type", "invalid_date")


class Counts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every figure counted for one operation; each field is read by a metric family."""

    interactions: dict[LabelKey, int] = {}
    last_window: dict[LabelKey, int] = {}  # the last complete window's, 0 once had traffic
    received: int = 0
    duplicates: int = 0
    outside_range: int = 0  # counted rows dated outside the range that returned them
    late: int = 0  # counted rows dated in a window already published
    newest: int | None = None  # the date of the newest row counted, epoch seconds
    rejected: dict[str, int] = msgspec.field(
        default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0)
    )
    overflow: dict[str, int] = msgspec.field(
        default_factory=lambda: dict.fromkeys(LIMITED_LABELS, 0)
    )
    outcomes: dict[tuple[str, str], int] = {}  # channel, outcome
    sessions_total: dict[str, int] = {}  # by channel
    transferred_total: dict[str, int] = {}  # by channel
    customers_last_window: dict[str, int] = {}  # counts only; customer hashes are never saved
    # Conversations, observed once when a session ends (counting.conversations), by channel.
    sessions_ended: dict[tuple[str, str], int] = {}  # channel, result
    sessions_open: dict[str, int] = {}
    # Histograms: observations per (channel, bucket index; the last is +Inf), and their sum.
    session_turns: dict[tuple[str, int], int] = {}
    session_turns_sum: dict[str, float] = {}
    session_duration: dict[tuple[str, int], int] = {}
    session_duration_sum: dict[str, float] = {}
    session_time_to_transfer: dict[tuple[str, int], int] = {}
    session_time_to_transfer_sum: dict[str, float] = {}
    sessions_recontact: dict[tuple[str, str], int] = {}  # channel, the earlier one's result
    sessions_with_fallback: dict[str, int] = {}
    sessions_expired: dict[str, int] = {}
    session_rows_after_end: dict[str, int] = {}

    def copy(self) -> Counts:
        """A copy that later counting does not change: every container field is copied (one
        level deep is all there is), whatever fields the struct has."""
        copied: dict[str, object] = {
            name: value.copy()
            for name, value in msgspec.structs.asdict(self).items()
            if isinstance(value, dict | list)
        }
        return msgspec.structs.replace(self, **copied)


class TallyState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a restart needs to continue one operation's counting: the Counts and the books
    behind them. The sessions are rows of their own in the database (see state.py)."""

    counts: Counts
    by_window: dict[int, dict[LabelKey, int]] = {}
    last_active: dict[LabelKey, float] = {}
    # Rows remembered for dedupe by the second each is filed under: their fingerprints joined,
    # and their copies counted (seen.SeenRows.packed). Databases before version 7 hold them
    # as (second, fingerprint, copies) in `seen`, read and never written.
    rows_seen: dict[int, tuple[bytes, bytes]] = {}
    seen: list[tuple[int, bytes, int]] = []
    # Session digests by the bucket they were first seen in, packed (seen.pack), and the
    # digests of those transferred.
    session_buckets: dict[int, bytes] = {}
    session_transfers: bytes = b""
    # Open sessions (packed, by session digest) and customers of the re-contact window (by
    # keyed digest), rows of their own in the database too (the sessions as a journal);
    # channel labels by index.
    open_sessions: dict[int, bytes] = {}
    recontact_customers: dict[int, int] = {}
    session_channels: list[str] = []
    # Where the store's journal of open sessions stands (`journal.Journal`), as read at load.
    journal_generation: int = 0
    journal_entries: int = 0


class Ledger:
    """One operation's Counts and the books that continue them; see the module's docstring."""

    def __init__(self, retention: float) -> None:
        self.retention = retention  # how long a quiet label set stays in last_window
        self.counts = Counts()
        # Counts per window start, for windows whose rows may still arrive (late rows, re-reads).
        self.by_window: dict[int, dict[LabelKey, int]] = {}
        self.last_active: dict[LabelKey, float] = {}  # when a label set last had traffic
        self._shown = True  # whether last_window may hold a value other than 0

    def busiest_window(self) -> int | None:
        """Rows of the busiest window still held for the last-window gauge, if any: the
        recent traffic, which sizes a poller's first request."""
        return max((sum(c.values()) for c in self.by_window.values()), default=None)

    def add(
        self,
        groups: Counter[RawGroup],
        label: Callable[[RawGroup, Mapping[LabelKey, int]], Labelled],
    ) -> set[str | None]:
        """Add each group of records to the counters; return the raw routing answers whose
        outcome is a transfer. `label` gives a group's label set, knowing those counted so far
        (`labels.Labeler.group`, which memoises: a full answer has thousands of groups)."""
        counts = self.counts
        interactions, outcomes, overflow = counts.interactions, counts.outcomes, counts.overflow
        by_window = self.by_window
        transfers: set[str | None] = set()
        for group, n in groups.items():
            key, folded, outcome = label(group, interactions)
            for name in folded:
                overflow[name] = overflow.get(name, 0) + n
            interactions[key] = interactions.get(key, 0) + n
            by_outcome = (key[0], outcome)
            outcomes[by_outcome] = outcomes.get(by_outcome, 0) + n
            window = by_window.get(group[3])
            if window is None:
                window = by_window[group[3]] = {}
            window[key] = window.get(key, 0) + n
            if outcome == TRANSFERRED:
                transfers.add(group[2])
        return transfers

    def add_sessions(self, new: Mapping[str, int], transferred: Mapping[str, int]) -> None:
        """Count sessions new to us and sessions transferred for the first time, each given
        as how many by channel label."""
        for totals, by_channel in (
            (self.counts.sessions_total, new),
            (self.counts.transferred_total, transferred),
        ):
            for ch, n in by_channel.items():
                totals[ch] = totals.get(ch, 0) + n

    def publish(
        self, window_start: int, now: float, keep_from: int, customers: Counter[str]
    ) -> bool:
        """Expose the counts of the window that just completed as the last-window gauges, with
        its distinct `customers` by channel label.

        A label set that had traffic earlier reports 0 instead of vanishing, so panels show a drop
        rather than a gap; it is removed once quiet for `retention`. Returns whether anything
        shown changed: a quiet operation's publish usually changes nothing.
        """
        last_window = self.counts.last_window
        shown = self._shown
        if shown:
            for key in last_window:
                last_window[key] = 0
        window = self.by_window.get(window_start, {})
        for key, n in window.items():
            last_window[key] = n
            self.last_active[key] = now
        self._shown = bool(window)
        horizon = now - self.retention
        dropped = [k for k, t in self.last_active.items() if t < horizon]
        for key in dropped:
            del self.last_active[key]
            last_window.pop(key, None)
        for start in [s for s in self.by_window if s < keep_from]:
            del self.by_window[start]
        # The same channels as the interactions gauge, 0 when no customer came.
        distinct = {ch: customers.get(ch, 0) for ch in sorted({k[0] for k in last_window})}
        changed = shown or bool(window) or bool(dropped)
        if changed or distinct != self.counts.customers_last_window:
            self.counts.customers_last_window = distinct
            return True
        return False

    def state(self) -> TallyState:
        """The counts and books, copied; the tally adds the dedupe and session stores."""
        return TallyState(
            counts=self.counts.copy(),
            by_window={s: dict(w) for s, w in self.by_window.items()},
            last_active=dict(self.last_active),
        )

    def restore(self, saved: TallyState) -> None:
        self._shown = True
        self.counts = saved.counts.copy()
        self.by_window = {s: dict(w) for s, w in saved.by_window.items()}
        self.last_active = dict(saved.last_active)
