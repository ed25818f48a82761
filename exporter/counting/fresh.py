"""Which rows of an answer are new: grouped by digest, decoded only where a copy was not
counted before.

Re-reads return mostly rows already counted, so an answer is fingerprinted whole (cheap) and
decoded only in the part that is new (dear); a first read decodes it in one pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import compress

from exporter.api.records import Answer, Record, decode_rows, fingerprint

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


def keep_only(fresh: Fresh, keep: list[bool]) -> Fresh:
    fps, copies, had = fresh
    return list(compress(fps, keep)), list(compress(copies, keep)), list(compress(had, keep))


def fresh_rows(answer: Answer, known: Mapping[bytes, int]) -> tuple[list[Record | str], Fresh]:
    """The decoded rows with copies not counted yet (a row's text where it did not decode),
    one per digest, and their columns: digest, copies now, copies counted before."""
    rows = answer.rows
    fps = list(map(fingerprint, rows))
    copies = Counter(fps)
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
    return decoded, fresh
