"""Remembering what was counted, for exactly as long as it can come back.

Two things are remembered, with one mechanism (`Expiring`): each key is filed under the time
after which it cannot come back, so forgetting walks a few time keys, not every entry.

- Rows (`SeenRows`), for dedupe. Rows are keyed by a digest of their bytes, and the count per key
  matters: two identical rows in one answer are two real interactions (a message sent twice in
  the same second), so a key remembers how many copies were seen and a later answer adds only
  the copies beyond that. A row files under the second after which no request can return it.
- Sessions (`Sessions`), for `wolkvox_sessions_total` and `wolkvox_sessions_transferred_total`,
  which count a session_id once, when its first record is counted, and once at its first
  transferred record. Session ids are kept only as 64-bit XXH3 digests (in memory and in the
  state), filed under the ten minutes they were first seen, for the session horizon (default
  24h, far longer than a chat lasts; a session still sending records after it counts again).

A busy operation remembers a million sessions a day, so saving them all after every poll would
cost more than the poll. The session store notes what changed since the last save instead: the
sessions new in each bucket, the sessions transferred, and how far expiry went. A save appends
those (`pending`), packed as arrays of 64-bit digests, and a restart reads each bucket back as
the digests of all its rows. Rewriting a bucket whole at each save would cost a live poll
10 minutes of sessions (about 20,000 digests at 2,000 rows per 5 s) for its few hundred new.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, filterfalse, groupby
from operator import attrgetter, itemgetter, not_
from typing import Any, Generic, TypeVar

import xxhash

from exporter.api.records import FINGERPRINT_SIZE, Record
from exporter.counting import conversations

BUCKET = 600  # seconds a session bucket spans; memory holds the horizon plus one bucket

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_FIRST = itemgetter(0)
_SECOND = itemgetter(1)

_SESSION_ID = attrgetter("session_id")


class Expiring(Generic[K, V]):
    """A map whose keys are filed under a time bucket, and forgotten a bucket at a time."""

    def __init__(self, width: int) -> None:
        self.width = width  # seconds per bucket
        self.values: dict[K, V] = {}  # read directly by the hot paths
        self.buckets: dict[int, list[K]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def bucket(self, second: int) -> int:
        return second - second % self.width

    def file(self, bucket: int, keys: list[K]) -> None:
        """File new keys (already in `values`) under one bucket."""
        filed = self.buckets.get(bucket)
        if filed is None:
            self.buckets[bucket] = keys
        else:
            filed.extend(keys)

    def file_runs(self, pairs: Iterable[tuple[int, K]]) -> None:
        """File (bucket, key) pairs, in C-level builtins per run of equal buckets: the rows of
        one answer come in date order, so runs are long."""
        for bucket, run in groupby(pairs, key=_FIRST):
            filed = self.buckets.get(bucket)
            if filed is None:
                self.buckets[bucket] = list(map(_SECOND, run))
            else:
                filed.extend(map(_SECOND, run))

    def forget_before(self, second: int) -> bool:
        """Forget the keys of every bucket that ended by `second`; return whether any went."""
        gone = [b for b in self.buckets if b + self.width <= second]
        values = self.values
        for bucket in gone:
            for key in self.buckets.pop(bucket):
                values.pop(key, None)
        return bool(gone)


class SeenRows:
    """Row digests and how many copies of each were counted, filed by the second after which
    no request returns the row again."""

    def __init__(self) -> None:
        self._store: Expiring[bytes, int] = Expiring(1)
        self.copies = self._store.values  # read directly by the ingest loop

    def __len__(self) -> int:
        return len(self.copies)

    def admit(self, fp: bytes, copies: int, second: int) -> int:
        """Record that an answer held `copies` of a row; return how many of them are new."""
        seen = self.copies.get(fp, 0)
        if copies <= seen:
            return 0
        if not seen:
            self._store.file(second, [fp])
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
        self._store.file_runs(new)

    def forget_before(self, second: int) -> None:
        """Drop every row filed before `second`: no request will ever return it again."""
        self._store.forget_before(second)

    def packed(self) -> dict[int, tuple[bytes, bytes]]:
        """Every row by the second it is filed under, as its fingerprints joined (each of
        FINGERPRINT_SIZE bytes) and its copies as an array of 64-bit counts. Saved after every
        poll: built by C-level joins, where a tuple per row cost about 1 ms per 2,000 rows."""
        copies = self.copies
        return {
            second: (b"".join(fps), array("Q", map(copies.__getitem__, fps)).tobytes())
            for second, fps in self._store.buckets.items()
        }

    def load(self, rows: Iterable[tuple[int, bytes, int]]) -> None:
        for second, fp, copies in rows:
            self.admit(fp, copies, second)

    def load_packed(self, rows: Mapping[int, tuple[bytes, bytes]]) -> None:
        """Restore rows as `packed` gives them."""
        for second, (fps, counts) in rows.items():
            copies = array("Q")
            copies.frombytes(counts)
            keys = [fps[at : at + FINGERPRINT_SIZE] for at in range(0, len(fps), FINGERPRINT_SIZE)]
            for fp, n in zip(keys, copies, strict=True):
                self.admit(fp, n, second)


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
    buckets: dict[int, bytes] = field(default_factory=dict)  # sessions new there, packed
    transfers: dict[int, bytes] = field(default_factory=dict)  # newly transferred, packed
    conversations: conversations.Changes = field(default_factory=conversations.Changes)


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
    """Session digests and whether each was transferred yet, by the bucket first seen in."""

    def __init__(self) -> None:
        self._store: Expiring[int, bool] = Expiring(BUCKET)
        self.transferred = self._store.values  # session digest -> transferred yet
        self.buckets = self._store.buckets  # digests by the bucket first seen in
        # Since the last save: new sessions and transfers by the bucket they happened in (a
        # transfer outlives its session in the store, never the other way round), expiry.
        self._added: dict[int, list[int]] = {}
        self._transfers: dict[int, list[int]] = {}
        self._floor: int | None = None

    def __len__(self) -> int:
        return len(self.transferred)

    def admit(
        self, first_channel: dict[int, str], transferred: set[int], second: int
    ) -> tuple[list[int], list[int]]:
        """Note the sessions of newly counted records (digest -> raw channel of its records, and
        the digests with a transfer among them); return the digests of the sessions that are
        new and of those transferred for the first time."""
        known = self.transferred
        new = list(filterfalse(known.__contains__, first_channel))
        newly_transferred = [
            key for key in transferred if key in first_channel and not known.get(key, False)
        ]
        bucket = self._store.bucket(second)
        if new:
            known.update(dict.fromkeys(new, False))
            self._store.file(bucket, new)
            self._added.setdefault(bucket, []).extend(new)
        if newly_transferred:
            known.update(dict.fromkeys(newly_transferred, True))
            self._transfers.setdefault(bucket, []).extend(newly_transferred)
        return new, newly_transferred

    def forget_before(self, second: int) -> None:
        """Drop sessions first seen in buckets that ended before `second`."""
        if self._store.forget_before(second):
            self._floor = max(second, self._floor or second)

    def pending(self) -> Changes:
        """What changed since the last `saved()`, ready to write."""
        buckets = self._store.buckets
        return Changes(
            floor=self._floor,
            buckets={b: pack(keys) for b, keys in self._added.items() if b in buckets},
            transfers={b: pack(keys) for b, keys in self._transfers.items()},
        )

    def saved(self) -> None:
        """The last `pending()` changes are stored: start noting afresh."""
        self._added.clear()
        self._transfers.clear()
        self._floor = None

    def image(self) -> tuple[dict[int, bytes], bytes]:
        """Everything, packed: the buckets, and the digests of the sessions transferred."""
        buckets = {b: pack(keys) for b, keys in self._store.buckets.items()}
        return buckets, pack(k for k, moved in self.transferred.items() if moved)

    def load(self, buckets: Mapping[int, bytes], transfers: Iterable[bytes]) -> None:
        """Restore from packed buckets and transfers, as `image()` or a store gives them.
        Transfers of sessions no longer remembered are ignored."""
        known = self.transferred
        for bucket, blob in buckets.items():
            keys = list(filterfalse(known.__contains__, unpack(blob)))
            known.update(dict.fromkeys(keys, False))
            self._store.file(bucket, keys)
        for blob in transfers:
            known.update(dict.fromkeys(filter(known.__contains__, unpack(blob)), True))


@dataclass
class Found:
    """The sessions of an answer's rows: each digest with its raw channel, the digests of those
    with a transfer among them, and each row's digest (None: the row has no session)."""

    channels: dict[int, str]
    transferred: set[int]
    rows: list[int | None]


def sessions_in(
    rows: Sequence[Record],
    channels: list[str],
    answers: list[str | None],
    transfers: set[str | None],
) -> Found | None:
    """The sessions of these rows (see `Found`), finding transfers by the raw answers that are
    one (`transfers`, found while counting label sets); None if no row has a session.

    Per-record work is done column-wise by C-level builtins; Python code runs once per
    distinct session (digest).
    """
    sids = list(map(_SESSION_ID, rows))
    # A session's channel is that of its records (the last one read, should they differ).
    try:
        first = dict(zip(sids, channels, strict=True))
    except TypeError:  # a JSON list or object as session_id
        sids = hashable(sids)
        first = dict(zip(sids, channels, strict=True))
    first.pop(None, None)
    first.pop("", None)
    if not first:
        return None
    keys = session_keys(first)
    digests = dict(zip(keys, first.values(), strict=True))
    key_of: dict[Any, int | None] = dict(zip(first, keys, strict=True))
    key_of[None] = key_of[""] = None
    moved: set[int] = set()
    if transfers:
        with_transfer = set(compress(sids, map(transfers.__contains__, answers))) - {None, ""}
        moved = {k for sid in with_transfer if (k := key_of[sid]) is not None}
    return Found(digests, moved, list(map(key_of.__getitem__, sids)))


def hashable(values: list[Any]) -> list[Any]:
    """Values as dictionary keys: JSON lists and objects by their text, everything else (None
    included, which means "absent") unchanged."""
    return [v if v is None or isinstance(v, str | int | float) else str(v) for v in values]
