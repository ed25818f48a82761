"""Counting decoded records into label sets, each row exactly once.

One `Tally` per operation. It owns the dedupe store, the label limiters and every number derived
from records; it does no I/O and takes no locks (the poller serialises access), so it can be tested
and benchmarked on its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from exporter import labels
from exporter.config import Labels
from exporter.dedupe import SeenRows
from exporter.records import Answer, DateParser, Record, decode_rows, fingerprint
from exporter.state import OperationState

LabelKey = tuple[str, str, str]  # channel, rp_id, routing_answer

REJECT_REASONS = ("missing_field", "invalid_type", "invalid_date", "out_of_range")
LIMITED_LABELS = ("channel", "rp_id", "routing_answer")


@dataclass
class Ingested:
    received: int = 0
    counted: int = 0
    duplicates: int = 0
    rejected: int = 0


class Tally:
    def __init__(self, zone: ZoneInfo, interval: int, config: Labels) -> None:
        self.interval = interval
        self.config = config
        self.parse_date = DateParser(zone)
        self.seen = SeenRows()
        self.interactions: dict[LabelKey, int] = {}
        self.received = 0
        self.duplicates = 0
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.overflow: dict[str, int] = dict.fromkeys(LIMITED_LABELS, 0)
        # Counts per window start, for windows whose rows may still arrive (late rows, re-reads).
        self.by_window: dict[int, dict[LabelKey, int]] = {}
        # The published last-window gauge and when each label set last had a non-zero value.
        self.last_window: dict[LabelKey, int] = {}
        self.last_active: dict[LabelKey, float] = {}
        self._limit_channel = labels.Limiter(config.channel.max_values)
        self._limit_rp = labels.Limiter(config.rp_id.max_values)
        self._limit_answer = labels.Limiter(config.routing_answer.max_values)
        self._label_cache: dict[
            tuple[str, str | int, str | None], tuple[LabelKey, tuple[str, ...]]
        ] = {}

    def ingest(self, answer: Answer, first: int, last: int) -> Ingested:
        """Count the rows of one answer to the inclusive request range `[first, last]`.

        This is the hot path (60,000 rows per answer at most), so it works in passes: group the
        rows by digest, decode only the groups with copies not seen before, then update the
        counters once per label set and window rather than once per row.
        """
        result = Ingested(received=answer.size)
        rows = answer.rows
        fps = [fingerprint(raw) for raw in rows]
        copies = Counter(fps)
        known = self.seen.copies
        fresh = [(fp, n) for fp, n in copies.items() if n > known.get(fp, 0)]
        decoded: list[Record | str]
        if len(fresh) == len(rows):
            # Every row distinct and new (a first read): `fresh` is in row order already.
            decoded = answer.decode_all()
        else:
            index = dict(zip(fps, range(len(fps)), strict=True))  # equal digests, equal bytes
            if 2 * len(fresh) > len(rows):
                everything = answer.decode_all()
                decoded = [everything[index[fp]] for fp, _ in fresh]
            else:
                decoded = decode_rows([rows[index[fp]] for fp, _ in fresh])
        by_second = self.seen.by_second
        parsed = self.parse_date.cache
        dates = self.parse_date
        interval = self.interval
        keys: list[tuple[str, str | int, str | None, int]] = []
        for (fp, n), row in zip(fresh, decoded, strict=True):
            if isinstance(row, str):
                reason = row
            else:
                second = parsed.get(row.date) or dates(row.date)
                if second is not None and first <= second <= last:
                    # SeenRows.admit, inlined: this runs once per new row.
                    already = known.get(fp, 0)
                    if not already:
                        by_second.setdefault(second, []).append(fp)
                    known[fp] = n
                    key = (row.channel, row.rp_id, row.routing_answer, second - second % interval)
                    keys.append(key)
                    if n - already > 1:
                        keys.extend([key] * (n - already - 1))
                    continue
                reason = "invalid_date" if second is None else "out_of_range"
            # Filed under the end of this range: no later request returns it once the look-back
            # has passed that second.
            new = self.seen.admit(fp, n, last)
            self.rejected[reason] = self.rejected.get(reason, 0) + new
            result.rejected += new
        result.counted += len(keys)
        for (ch, rp, answer_text, window), n in Counter(keys).items():
            self._count((ch, rp, answer_text), window, n)
        result.duplicates = result.received - result.counted - result.rejected
        self.received += result.received
        self.duplicates += result.duplicates
        return result

    def _count(self, raw: tuple[str, str | int, str | None], window_start: int, n: int) -> None:
        cached = self._label_cache.get(raw)
        if cached is None:
            cached = self._labels(raw)
            if len(self._label_cache) >= 10_000:
                self._label_cache.clear()
            self._label_cache[raw] = cached
        key, folded = cached
        for name in folded:
            self.overflow[name] += n
        self.interactions[key] = self.interactions.get(key, 0) + n
        window = self.by_window.get(window_start)
        if window is None:
            window = self.by_window[window_start] = {}
        window[key] = window.get(key, 0) + n

    def _labels(self, raw: tuple[str, str | int, str | None]) -> tuple[LabelKey, tuple[str, ...]]:
        folded: list[str] = []
        ch, f1 = self._limit_channel(labels.channel(raw[0]))
        rp, f2 = self._limit_rp(labels.rp_id(raw[1]))
        ans, f3 = self._limit_answer(
            labels.routing_answer(raw[2], self.config.routing_answer.max_length)
        )
        for name, was in zip(LIMITED_LABELS, (f1, f2, f3), strict=True):
            if was:
                folded.append(name)
        return (ch, rp, ans), tuple(folded)

    def publish(self, window_start: int, now: float, keep_from: int) -> None:
        """Expose the counts of the window that just completed as the last-window gauge.

        A label set that had traffic earlier reports 0 instead of vanishing, so panels show a drop
        rather than a gap; it is removed once quiet for `last_window_retention`.
        """
        counts = self.by_window.get(window_start, {})
        for key in self.last_window:
            self.last_window[key] = 0
        for key, n in counts.items():
            self.last_window[key] = n
            self.last_active[key] = now
        horizon = now - self.config.last_window_retention
        for key in [k for k, t in self.last_active.items() if t < horizon]:
            del self.last_active[key]
            self.last_window.pop(key, None)
        for start in [s for s in self.by_window if s < keep_from]:
            del self.by_window[start]

    def forget_before(self, second: int) -> None:
        self.seen.forget_before(second)

    def export(self) -> dict[str, Any]:
        """The parts of the tally that a restart needs, as plain values for the state file."""
        return {
            "interactions": [(*k, n) for k, n in self.interactions.items()],
            "received": self.received,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "overflow": dict(self.overflow),
            "by_window": {s: [(*k, n) for k, n in w.items()] for s, w in self.by_window.items()},
            "last_window": [
                (*k, n, self.last_active.get(k, 0.0)) for k, n in self.last_window.items()
            ],
            "seen": list(self.seen.items()),
        }

    def restore(self, saved: OperationState) -> None:
        """Resume from a saved state: counters continue, known rows stay known."""
        for *key, n in saved.interactions:
            label_key = (key[0], key[1], key[2])
            self.interactions[label_key] = n
            for limiter, value in zip(
                (self._limit_channel, self._limit_rp, self._limit_answer), label_key, strict=True
            ):
                if value != labels.OTHER:
                    limiter.admitted.add(value)
        self.received = saved.received
        self.duplicates = saved.duplicates
        self.rejected.update(saved.rejected)
        self.overflow.update(saved.overflow)
        self.by_window = {
            start: {(c, r, a): n for c, r, a, n in rows} for start, rows in saved.by_window.items()
        }
        for c, r, a, n, active in saved.last_window:
            self.last_window[(c, r, a)] = n
            if active:
                self.last_active[(c, r, a)] = active
        self.seen.load(saved.seen)
