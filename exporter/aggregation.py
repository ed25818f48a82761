"""Counting decoded records into label sets, each row exactly once.

One `Tally` per operation. It owns the dedupe store, the label limiters and every number derived
from records; it does no I/O and takes no locks (the poller serialises access), so it can be tested
and benchmarked on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from exporter import labels
from exporter.config import Labels
from exporter.dedupe import SeenRows
from exporter.records import Answer, DateParser, Record, fingerprint
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
        # Rejected rows by digest: copies seen, and the end of the last range that returned them.
        self.rejects: dict[bytes, tuple[int, int]] = {}
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
        """Count the rows of one answer to the inclusive request range `[first, last]`."""
        result = Ingested(received=answer.size)
        copies: dict[tuple[int, bytes], int] = {}
        sample: dict[tuple[int, bytes], Record] = {}
        bad: dict[tuple[str, bytes], int] = {}
        for reason, digest in answer.bad:
            bad[(reason, digest)] = bad.get((reason, digest), 0) + 1
        parse = self.parse_date
        for rec in answer.records:
            second = parse(rec.date)
            if second is None or second < first or second > last:
                reason = "invalid_date" if second is None else "out_of_range"
                key_bad = (reason, fingerprint(rec))
                bad[key_bad] = bad.get(key_bad, 0) + 1
                continue
            key = (second, fingerprint(rec))
            if key in copies:
                copies[key] += 1
            else:
                copies[key] = 1
                sample[key] = rec
        admit = self.seen.admit
        for key, n in copies.items():
            new = admit(key[0], key[1], n)
            if new:
                self._count(sample[key], key[0], new)
                result.counted += new
        for (reason, digest), n in bad.items():
            new = self._reject(reason, digest, n, last)
            self.rejected[reason] = self.rejected.get(reason, 0) + new
            result.rejected += new
        result.duplicates = result.received - result.counted - result.rejected
        self.received += result.received
        self.duplicates += result.duplicates
        return result

    def _reject(self, reason: str, digest: bytes, copies: int, last: int) -> int:
        """Like SeenRows.admit for rows that cannot be counted: how many copies are new."""
        seen, _ = self.rejects.get(digest, (0, 0))
        self.rejects[digest] = (max(seen, copies), last)
        return max(0, copies - seen)

    def _count(self, rec: Record, second: int, n: int) -> None:
        raw = (rec.channel, rec.rp_id, rec.routing_answer)
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
        start = second - second % self.interval
        window = self.by_window.get(start)
        if window is None:
            window = self.by_window[start] = {}
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
        for digest in [d for d, (_, last) in self.rejects.items() if last < second]:
            del self.rejects[digest]

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
            "rejects": [(d, n, last) for d, (n, last) in self.rejects.items()],
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
        self.rejects = {d: (n, last) for d, n, last in saved.rejects}
