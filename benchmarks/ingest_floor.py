"""Where `ingest.py`'s ratio comes from: the part no pure-Python ingest can avoid, the counting
core without conversations, and the whole ingest, on the same 60,000-record answer.

Issues 21 and 24 ask for the whole ingest at 1.5x and 1.2x `json.loads`. This prints the steps
between `json.loads` and our ingest so the distance can be read by cause rather than argued:
- the decode floor: the envelope into raw rows, a digest of each row, and the rows' counted
  fields into structs (msgspec). Every design that dedupes by row and labels by field pays it;
- the floor plus each row's date as epoch seconds and one grouping by label set and window:
  rows counted, with no dedupe store, no label rules or caps, no sessions;
- our ingest of the same answer with every `session_id` null, padded with spaces to the same
  byte length: dedupe, dates, labels, windows and distinct customers, but no session work;
- our whole ingest, as `ingest.py` runs it.
All in turns, best of 9 rounds, so a slow patch of the machine weighs on every line alike.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from operator import attrgetter
from typing import cast

from benchmarks.common import answer_bytes, best_of_each, machine
from benchmarks.ingest import RECORDS, ours
from exporter.api import records
from exporter.api.records import DateParser
from tests.support.harness import operation_settings

_SESSION = re.compile(rb'"session_id": "[^"]*"')
_FIELDS = [attrgetter(f) for f in ("channel", "rp_id", "routing_answer")]


def without_sessions(body: bytes) -> bytes:
    """The answer with each session_id null, the same length (JSON allows the spaces)."""

    def null(match: re.Match[bytes]) -> bytes:
        return b'"session_id": null'.ljust(len(match.group(0)))

    out = _SESSION.sub(null, body)
    assert len(out) == len(body) and b'"session_id": "' not in out
    return out


def decode_floor(body: bytes) -> list[records.Record]:
    answer = records.decode(body)
    Counter(map(records.fingerprint, answer.rows))
    return cast(list[records.Record], answer.decode_all())


def counted_floor(body: bytes, parse: DateParser, interval: int) -> Counter[tuple[object, ...]]:
    typed = decode_floor(body)
    seconds = parse.many(list(map(attrgetter("date"), typed)))
    windows = [s - s % interval for s in seconds if s is not None]
    return Counter(zip(*(list(map(f, typed)) for f in _FIELDS), windows, strict=True))


def main() -> None:
    body, first, last = answer_bytes(RECORDS)
    bare = without_sessions(body)
    settings = operation_settings()
    interval = settings.interval
    assert ours(bare, first, last).conversations.channels == []  # no session was followed
    assert sum(counted_floor(body, DateParser(settings.zone), interval).values()) == RECORDS
    best = best_of_each(
        {
            "json.loads": lambda: json.loads(body),
            "decode floor": lambda: decode_floor(body),
            "floor + dates + grouping": lambda: counted_floor(
                body, DateParser(settings.zone), interval
            ),
            "json.loads, sessions null": lambda: json.loads(bare),
            "ingest, sessions null": lambda: ours(bare, first, last),
            "ingest": lambda: ours(body, first, last),
        },
        repeat=9,
    )
    floor = best["json.loads"]
    print(f"machine: {machine()}")
    print(f"answer: {RECORDS} records, {len(body) / 1e6:.1f} MB, in turns, best of 9")
    for name, seconds in best.items():
        print(f"  {name:28s} {seconds * 1000:7.1f} ms  ({seconds / floor:.2f}x)")
    print("targets for the whole ingest: <= 1.5x (issue 21), <= 1.2x (issue 24)")


if __name__ == "__main__":
    main()
