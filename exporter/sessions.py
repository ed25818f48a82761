"""Remembering which sessions were counted, hashed, for a bounded horizon.

`wolkvox_sessions_total` counts a session_id once, when its first record is counted, and
`wolkvox_sessions_transferred_total` once, at its first transferred record; the records of one
session arrive over several polls, so both need memory of the sessions seen. Session ids are
kept only as 64-bit XXH3 digests (in memory and in the state file), filed under the ten minutes
they were first seen so that forgetting sessions older than the horizon walks buckets, not
sessions. A session still sending records after the horizon is counted again; the horizon
(default 24h) is far longer than a chat session lasts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import xxhash

BUCKET = 600  # seconds; memory holds the horizon plus at most one bucket


def session_key(session_id: str | int) -> int:
    """The digest a session is remembered by; `123` and `"123"` are the same session."""
    return xxhash.xxh3_64_intdigest(str(session_id).encode())


def session_keys(session_ids: Iterable[Any]) -> list[int]:
    """`session_key` of each id, in C when they are all strings (as Wolkvox sends them)."""
    ids = list(session_ids)
    try:
        return list(map(xxhash.xxh3_64_intdigest, map(str.encode, ids)))
    except TypeError:  # a number among them
        return list(map(session_key, ids))


class Sessions:
    def __init__(self) -> None:
        self.transferred: dict[int, bool] = {}  # session digest -> transferred yet
        self._by_bucket: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.transferred)

    def admit(
        self, first_channel: dict[int, str], transferred: set[int], second: int
    ) -> tuple[list[str], list[str]]:
        """Note the sessions of newly counted records (digest -> raw channel of its records, and
        the digests with a transfer among them); return the channels of the sessions that are new
        and of those transferred for the first time, one entry per session."""
        known = self.transferred
        new = [key for key in first_channel if key not in known]
        newly_transferred = [
            key for key in transferred if key in first_channel and not known.get(key, False)
        ]
        if new:
            known.update(dict.fromkeys(new, False))
            bucket = second - second % BUCKET
            filed = self._by_bucket.get(bucket)
            if filed is None:
                self._by_bucket[bucket] = new
            else:
                filed.extend(new)
        for key in newly_transferred:
            known[key] = True
        return [first_channel[k] for k in new], [first_channel[k] for k in newly_transferred]

    def forget_before(self, second: int) -> None:
        """Drop sessions first seen in buckets that ended before `second`."""
        for bucket in [b for b in self._by_bucket if b + BUCKET <= second]:
            for key in self._by_bucket.pop(bucket):
                self.transferred.pop(key, None)

    def items(self) -> Iterator[tuple[int, int, bool]]:
        for bucket, keys in self._by_bucket.items():
            for key in keys:
                yield bucket, key, self.transferred[key]

    def load(self, rows: Iterable[tuple[int, int, bool]]) -> None:
        for bucket, key, transferred in rows:
            if key not in self.transferred:
                self._by_bucket.setdefault(bucket, []).append(key)
            self.transferred[key] = transferred
