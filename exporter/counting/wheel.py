"""Keys filed by the span of time they fall due in: what is due is found by looking at the
spans that passed, not at every key held.

A key is filed again each time its due time moves; the copies left behind are found stale by
whoever takes them out (the key is gone, or not due yet, and filed again).
"""

from __future__ import annotations

from dataclasses import dataclass


class Wheel:
    def __init__(self, width: int) -> None:
        self.width = width  # seconds per bucket
        self.buckets: dict[int, list[int]] = {}

    def file(self, key: int, second: int) -> None:
        """File `key` under `second`; not again where it was just filed (a session changed
        row after row stays one entry)."""
        bucket = second - second % self.width
        filed = self.buckets.get(bucket)
        if filed is None:
            self.buckets[bucket] = [key]
        elif filed[-1] != key:
            filed.append(key)

    def file_many(self, keys: list[int], seconds: list[int]) -> None:
        buckets, width = self.buckets, self.width
        for key, second in zip(keys, seconds, strict=True):
            bucket = second - second % width
            filed = buckets.get(bucket)
            if filed is None:
                buckets[bucket] = [key]
            else:
                filed.append(key)

    def before(self, second: int) -> list[list[int]]:
        """Take out the keys of the buckets that began before `second`, oldest first."""
        due = sorted(b for b in self.buckets if b < second)
        return [self.buckets.pop(b) for b in due]

    def scan(self) -> Scan:
        """Where a reading of every key filed now starts: before the first bucket, and up to
        the last one filed now."""
        return Scan(-(2**63), None, 0, max(self.buckets, default=-1) + self.width)

    def take(self, at: Scan, n: int) -> tuple[list[int], Scan | None]:
        """About `n` keys on from `at`, in bucket order, and where the reading stands after
        them (None: it has read every bucket it reaches). `at` is not changed, so a reading can
        be taken again from the same place.

        A key filed when the reading started and still filed is met at least once, filed
        again meanwhile or not, as long as it was only ever filed again in a later or the same
        bucket (`before` files nothing itself; its caller files what is not due yet at or after
        the bucket it took it from) and not beyond `reach`. The reading holds the list of the
        bucket it reads, taken out or not: a key filed anew in that bucket came from it or
        from one read before."""
        taken: list[int] = []
        bucket, filed, index = at.bucket, at.filed, at.index
        ahead: list[int] | None = None
        while True:
            if filed is not None:
                part = filed[index : index + n - len(taken)]
                taken += part
                index += len(part)
                if len(taken) >= n:
                    return taken, Scan(bucket, filed, index, at.reach)
            if ahead is None:
                ahead = sorted(b for b in self.buckets if bucket < b < at.reach)
                ahead.reverse()
            if not ahead:
                return taken, None
            bucket = ahead.pop()
            filed, index = self.buckets[bucket], 0


@dataclass(frozen=True)
class Scan:
    """Where a reading of a wheel's keys stands (see `Wheel.take`)."""

    bucket: int  # the bucket it reads
    filed: list[int] | None  # the list it reads there
    index: int  # how many of that list it has read
    reach: int  # the first second whose bucket it does not read
