"""Keys filed by the span of time they fall due in: what is due is found by looking at the
spans that passed, not at every key held.

A key is filed again each time its due time moves; the copies left behind are found stale by
whoever takes them out (the key is gone, or not due yet, and filed again).
"""

from __future__ import annotations


class Wheel:
    def __init__(self, width: int) -> None:
        self.width = width  # seconds per bucket
        self.buckets: dict[int, list[int]] = {}

    def file(self, key: int, second: int) -> None:
        bucket = second - second % self.width
        filed = self.buckets.get(bucket)
        if filed is None:
            self.buckets[bucket] = [key]
        else:
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
