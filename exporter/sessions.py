"""Remembering which sessions were counted, hashed, for a bounded horizon.

`wolkvox_sessions_total` counts a session_id once, when its first record is counted, and
`wolkvox_sessions_transferred_total` once, at its first transferred record; the records of one
session arrive over several polls, so both need memory of the sessions seen. Session ids are
kept only as 64-bit XXH3 digests (in memory and in the state file), filed under the ten minutes
they were first seen so that forgetting sessions older than the horizon walks buckets, not
sessions. A session still sending records after the horizon is counted again; the horizon
(default 24h) is far longer than a chat session lasts.

A busy operation remembers a million sessions a day, so saving them all after every poll would
cost more than the poll. The store notes what changed since the last save instead: the buckets
that got new sessions, the sessions transferred, and how far expiry went. A save writes those
(`pending`), and a restart reads the buckets back whole, packed as arrays of 64-bit digests.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import filterfalse
from typing import Any

import xxhash

BUCKET = 600  # seconds; memory holds the horizon plus at most one bucket


def pack(keys: Iterable[int]) -> bytes:
    """Session digests as the bytes of an array of unsigned 64-bit integers."""
    return array("Q", keys).tobytes()


def unpack(blob: bytes) -> list[int]:
    keys = array("Q")
    keys.frombytes(blob)
    return keys.tolist()


@dataclass
class Changes:
    """What a save must write since the last one: every key is a bucket start."""

    floor: int | None = None  # buckets that ended at or before it are gone
    buckets: dict[int, bytes] = field(default_factory=dict)  # whole contents, packed
    transfers: dict[int, bytes] = field(default_factory=dict)  # newly transferred, packed


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
        # Since the last save: buckets with new sessions, transfers by the bucket they happened
        # in (a transfer outlives its session in the store, never the other way round), expiry.
        self._dirty: set[int] = set()
        self._transfers: dict[int, list[int]] = {}
        self._floor: int | None = None

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
        bucket = second - second % BUCKET
        if new:
            known.update(dict.fromkeys(new, False))
            filed = self._by_bucket.get(bucket)
            if filed is None:
                self._by_bucket[bucket] = new
            else:
                filed.extend(new)
            self._dirty.add(bucket)
        if newly_transferred:
            known.update(dict.fromkeys(newly_transferred, True))
            self._transfers.setdefault(bucket, []).extend(newly_transferred)
        return [first_channel[k] for k in new], [first_channel[k] for k in newly_transferred]

    def forget_before(self, second: int) -> None:
        """Drop sessions first seen in buckets that ended before `second`."""
        gone = [b for b in self._by_bucket if b + BUCKET <= second]
        for bucket in gone:
            for key in self._by_bucket.pop(bucket):
                self.transferred.pop(key, None)
        if gone:
            self._floor = max(second, self._floor or second)

    def pending(self) -> Changes:
        """What changed since the last `saved()`, ready to write."""
        return Changes(
            floor=self._floor,
            buckets={b: pack(self._by_bucket[b]) for b in self._dirty if b in self._by_bucket},
            transfers={b: pack(keys) for b, keys in self._transfers.items()},
        )

    def saved(self) -> None:
        """The last `pending()` changes are stored: start noting afresh."""
        self._dirty.clear()
        self._transfers.clear()
        self._floor = None

    def image(self) -> tuple[dict[int, bytes], bytes]:
        """Everything, packed: the buckets, and the digests of the sessions transferred."""
        buckets = {b: pack(keys) for b, keys in self._by_bucket.items()}
        return buckets, pack(k for k, moved in self.transferred.items() if moved)

    def load(self, buckets: Mapping[int, bytes], transfers: Iterable[bytes]) -> None:
        """Restore from packed buckets and transfers, as `image()` or a store gives them.
        Transfers of sessions no longer remembered are ignored."""
        known = self.transferred
        for bucket, blob in buckets.items():
            keys = list(filterfalse(known.__contains__, unpack(blob)))
            known.update(dict.fromkeys(keys, False))
            self._by_bucket.setdefault(bucket, []).extend(keys)
        for blob in transfers:
            known.update(dict.fromkeys(filter(known.__contains__, unpack(blob)), True))
