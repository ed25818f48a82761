"""Remembering which rows were counted, for exactly as long as they can be read again.

Rows are keyed by the second they are dated and a fingerprint of the whole row. The count per key
matters: two identical rows in one answer are two real interactions (a message sent twice in the
same second), so a key remembers how many copies were counted and a later answer adds only the
copies beyond that. Rows are bucketed by second so that forgetting everything older than the
re-read horizon is a walk over a few hundred bucket keys, not over every fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class SeenRows:
    def __init__(self) -> None:
        self._buckets: dict[int, dict[bytes, int]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def admit(self, second: int, fp: bytes, copies: int) -> int:
        """Record that an answer held `copies` of a row; return how many of them are new."""
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = {}
        seen = bucket.get(fp, 0)
        if copies <= seen:
            return 0
        if seen == 0:
            self._size += 1
        bucket[fp] = copies
        return copies - seen

    def forget_before(self, second: int) -> None:
        """Drop every row dated before `second`: no request will ever return it again."""
        for key in [k for k in self._buckets if k < second]:
            self._size -= len(self._buckets.pop(key))

    def items(self) -> Iterator[tuple[int, bytes, int]]:
        for second, bucket in self._buckets.items():
            for fp, copies in bucket.items():
                yield second, fp, copies

    def load(self, rows: Iterable[tuple[int, bytes, int]]) -> None:
        for second, fp, copies in rows:
            self.admit(second, fp, copies)
