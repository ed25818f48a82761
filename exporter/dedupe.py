"""Remembering which rows were counted, for exactly as long as they can be read again.

Rows are keyed by a digest of their bytes. The count per key matters: two identical rows in one
answer are two real interactions (a message sent twice in the same second), so a key remembers how
many copies were seen and a later answer adds only the copies beyond that. Each key also files
under the second after which no request can return it again (the row's date, or for a row that
could not be dated, the end of the range that returned it), so forgetting everything older than the
re-read horizon walks a few hundred second keys, not every digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import compress, groupby
from operator import itemgetter, not_

_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


class SeenRows:
    def __init__(self) -> None:
        self.copies: dict[bytes, int] = {}  # read directly by the ingest loop
        self.by_second: dict[int, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self.copies)

    def get(self, fp: bytes) -> int:
        """How many copies of this row were seen already."""
        return self.copies.get(fp, 0)

    def admit(self, fp: bytes, copies: int, second: int) -> int:
        """Record that an answer held `copies` of a row; return how many of them are new."""
        seen = self.copies.get(fp, 0)
        if copies <= seen:
            return 0
        if not seen:
            bucket = self.by_second.get(second)
            if bucket is None:
                self.by_second[second] = [fp]
            else:
                bucket.append(fp)
        self.copies[fp] = copies
        return copies - seen

    def admit_many(
        self, fps: list[bytes], copies: list[int], had: list[int], seconds: list[int]
    ) -> None:
        """`admit` for the rows of one answer known to have copies not seen yet (`had` of them
        seen before), each dated at its second; done with C-level builtins, as a full answer
        has 60,000 rows."""
        self.copies.update(zip(fps, copies, strict=True))
        new: Iterable[tuple[int, bytes]] = zip(seconds, fps, strict=True)
        if any(had):
            new = compress(new, map(not_, had))
        by_second = self.by_second
        for second, group in groupby(new, key=_FIRST):
            filed = by_second.get(second)
            if filed is None:
                by_second[second] = list(map(_SECOND, group))
            else:
                filed.extend(map(_SECOND, group))

    def forget_before(self, second: int) -> None:
        """Drop every row filed before `second`: no request will ever return it again."""
        for key in [k for k in self.by_second if k < second]:
            for fp in self.by_second.pop(key):
                self.copies.pop(fp, None)

    def items(self) -> Iterator[tuple[int, bytes, int]]:
        for second, fps in self.by_second.items():
            for fp in fps:
                yield second, fp, self.copies[fp]

    def load(self, rows: Iterable[tuple[int, bytes, int]]) -> None:
        for second, fp, copies in rows:
            self.admit(fp, copies, second)
