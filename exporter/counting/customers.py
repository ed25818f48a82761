"""Distinct customers per window: who wrote, hashed the moment they are read, never saved.

Python's salted string hash is enough: the hashes only need to be distinct within this process,
and are never saved or exposed. Filed by window so that publishing and expiry touch one window,
not every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter

from exporter.counting.seen import hashable

_FIRST = itemgetter(0)
_REST = itemgetter(1, 2)
# The hash of "no customer": None, "" and 0 (an id field sent as a number) are nobody.
_NOBODY = frozenset({hash(None), hash(""), hash(0)})


class Customers:
    """(raw channel, customer hash) by window start, of the open windows; memory only."""

    def __init__(self) -> None:
        self.by_window: dict[int, set[tuple[str, int]]] = {}

    def file(self, who: list[object], channels: list[str], windows: list[int]) -> None:
        """File each record's customer (id, else phone, else e-mail: `Record.customer`) under
        its window."""
        try:
            hashes = list(map(hash, who))
        except TypeError:  # a JSON list or object in a customer field
            hashes = list(map(hash, hashable(who)))
        # Rows come in date order, so windows come in long runs: one set update per run.
        by_window = self.by_window
        for window, run in groupby(zip(windows, channels, hashes, strict=True), key=_FIRST):
            filed = by_window.get(window)
            if filed is None:
                filed = by_window[window] = set()
            filed.update(map(_REST, run))

    def distinct(self, window_start: int, channel: Callable[[str], str]) -> Counter[str]:
        """Distinct customers of a window by channel label."""
        filed = self.by_window.get(window_start, set())
        raws = set(map(_FIRST, filed))
        labels = {raw: channel(raw) for raw in raws}
        if len(set(labels.values())) < len(labels):  # raw channels folded into one label
            seen = {(labels[ch], who) for ch, who in filed if who not in _NOBODY}
            return Counter(map(_FIRST, seen))
        # One label per raw channel (the usual case): the pairs filed are distinct already,
        # and are counted in C; the few "nobody" pairs are taken off after.
        counts = Counter(map(labels.__getitem__, map(_FIRST, filed)))
        for raw in raws:
            counts[labels[raw]] -= sum((raw, nobody) in filed for nobody in _NOBODY)
        return +counts

    def forget_before(self, window_start: int) -> None:
        for start in [w for w in self.by_window if w < window_start]:
            del self.by_window[start]
