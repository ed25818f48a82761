"""What a save writes of the open sessions: a journal of each poll's changes, and an image of
all of them rolled out a slice per save.

A live poll changes open sessions all over their table: a session that started an hour ago has
its next message now. Written as one database row per session, a poll's 2,000 changes touched
nearly every page of a 60,000-session table: 13 ms of CPU and megabytes of write-ahead log per
poll, about what the poll's ingest costs. So a save appends one row instead: the packed state of the
sessions that changed, and the digests of those that ended. A restart replays the rows in order.

Replayed rows would pile up, so once the journal holds more entries than twice the sessions open
(and a floor), a new generation starts: every open session is written again, a slice per save
so that no save writes a million at once, and once all are, the rows of older generations are
deleted. Nothing is lost with them: a session open at that point has an entry since, one that
ended has its digest in a row since, or none at all. The slices are read off the end-time wheel
the sessions are filed on, bucket after bucket, so that starting an image does not list a
million keys in one save (18-50 ms at 1M open, touching every key).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from exporter.counting.wheel import Scan, Wheel

# Entries the journal may hold beyond twice the sessions open before it is written anew: a
# quiet operation's journal stays a few rows.
FLOOR = 65_536
# An image is written over this many saves at least, and no fewer than `SLICE` sessions a save.
SLICES = 128
SLICE = 8_192


def pack(sessions: Mapping[int, bytes]) -> bytes:
    """Sessions as one blob: their digests (unsigned 64-bit integers), then their packed states
    in the same order."""
    return array("Q", sessions.keys()).tobytes() + b"".join(sessions.values())


def unpack(blob: bytes, size: int) -> Iterator[tuple[int, bytes]]:
    """The (digest, packed state of `size` bytes) pairs of a blob made by `pack`."""
    n = len(blob) // (8 + size)
    keys = array("Q")
    keys.frombytes(blob[: 8 * n])
    states = blob[8 * n :]
    return zip(keys, (states[i : i + size] for i in range(0, n * size, size)), strict=True)


def replay(rows: Iterable[tuple[bytes, Iterable[int]]], size: int) -> tuple[dict[int, bytes], int]:
    """The open sessions a journal's rows (sessions blob, ended digests), in order, leave; and
    how many entries the rows hold."""
    open_: dict[int, bytes] = {}
    entries = 0
    for sessions, ended in rows:
        for key in ended:
            open_.pop(key, None)
            entries += 1
        open_.update(unpack(sessions, size))
        entries += len(sessions) // (8 + size)
    return open_, entries


@dataclass
class Entry:
    """What one save writes to the journal (see `Journal.plan`)."""

    sessions: dict[int, bytes]
    ended: set[int]
    generation: int
    drop_before: int | None  # an image completed: the rows of older generations go


class Journal:
    """Where the journal stands: its generation, its size, and the image being written."""

    def __init__(self) -> None:
        self.generation = 0
        self.entries = 0  # entries the journal holds, all generations
        self._image: Scan | None = None  # where the image under way stands on the end-time wheel
        self._step = SLICE  # sessions of the image under way written per save
        self._since = 0  # entries written since the image under way started
        self._restarted = False  # no save since `loaded`
        self._planned: tuple[Entry, Scan | None, int, int] | None = None

    @property
    def reach(self) -> int | None:
        """While an image is under way, the first second of the end-time wheel it does not
        read: a session not changed since it started and filed again from there on must be
        written as changed (see `plan`)."""
        return None if self._image is None else self._image.reach

    def loaded(self, generation: int, entries: int) -> None:
        """After a restart: the journal as the store read it. An image under way is not
        resumed; if one is due, the first save writes it whole, a generation above. Written a
        slice per save, an image of a million sessions takes 128 saves (over ten hours at
        five-minute polls): restarted more often than that (a crash loop, a deploy a day), the
        journal would never be written anew and would grow with each run."""
        self.generation, self.entries = generation, entries
        self._image, self._since, self._planned = None, 0, None
        self._restarted = True

    def plan(
        self, open_: dict[int, bytes], changed: Iterable[int], ended: set[int], due: Wheel
    ) -> Entry:
        """The entry the next save writes: the changed sessions still open, the ended ones, and
        the next slice of an image if one is under way or due. Nothing changes until `saved`,
        so a failed save is planned again the same way.

        An image reads the open sessions off the end-time wheel `due`, where every one is
        filed, a slice of its buckets per save, rather than listing a million keys in one
        save: a session changed since the image started is written by the change in the new
        generation anyway, and one that did not change stays filed in a bucket the image reads
        (filed again only later on the wheel, and as changed beyond its `reach`). A session
        met twice is written twice; one met after it ended, not at all."""
        image, step = self._image, self._step
        generation, since = self.generation, self._since
        starting = image is None and self.entries > 2 * len(open_) + FLOOR
        if starting and self._restarted:  # the whole image in this save (see `loaded`)
            whole = Entry(open_, set(ended), generation + 1, generation + 1)
            self._planned = (whole, None, step, len(open_) + len(ended))
            return whole  # written as it stands: nothing changes the sessions until `saved`
        sessions: dict[int, bytes | None] = {k: open_[k] for k in changed if k in open_}
        if starting:
            image, generation, since = due.scan(), generation + 1, 0
            step = max(SLICE, -(-len(open_) // SLICES))
        drop_before = None
        if image is not None:
            part, image = due.take(image, step)
            sessions.update(zip(part, map(open_.get, part), strict=True))
            if len(sessions) and None in sessions.values():  # ended, or filed stale
                sessions = {k: v for k, v in sessions.items() if v is not None}
            if image is None:
                drop_before = generation
        entry = Entry(cast(dict[int, bytes], sessions), set(ended), generation, drop_before)
        written = len(entry.sessions) + len(entry.ended)
        self._planned = (entry, image, step, since + written)
        return entry

    def saved(self) -> None:
        """The last planned entry is written."""
        if self._planned is None:
            return
        entry, self._image, self._step, self._since = self._planned
        self._planned, self._restarted = None, False
        self.generation = entry.generation
        written = len(entry.sessions) + len(entry.ended)
        self.entries = self._since if entry.drop_before is not None else self.entries + written
