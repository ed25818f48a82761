"""Saving what was counted, so a restart neither re-counts nor skips a row.

The store is a SQLite database (the standard library's sqlite3, in WAL mode with full sync):
per operation, one row holds the cursor, every counter and the dedupe fingerprints still inside
the re-read horizon (all small: bounded by the label caps and by traffic times the look-back),
and the sessions remembered for the session horizon (large: a busy operation's day is a million)
live in rows of one ten-minute bucket each; the open sessions of conversations are a journal
of each save's changes (`counting.journal`). A poll's save is one transaction that rewrites the
operation's row, only the session buckets that changed and one journal row, so it costs the
same whatever the horizon holds, and never touches another operation's rows. A crash at any
instant leaves the last committed transaction. A damaged database is moved aside with a clear
log line and the exporter starts fresh rather than crash-looping.

A JSON state file of version 2 at the same path is migrated on first start: it is kept beside as
`<name>.v2.json`, and the database replaces it atomically. A database of version 3 (the counts
as lists of tuples) is upgraded in place, in one transaction, as is one of version 5 (a row per
open session).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import msgspec

from exporter.counting import journal
from exporter.counting.conversations import OPEN_SIZE
from exporter.counting.counts import Counts, TallyState
from exporter.counting.seen import Changes, pack, unpack
from exporter.state import secret

log = logging.getLogger(__name__)

# The database's version: 6 rewrote a session bucket whole at each save, 5 kept a row per open
# session, 4 had no conversations, 3 stored the counts as lists, 2 was JSON.
VERSION = 7
SQLITE_MAGIC = b"SQLite format 3\x00"

Key = tuple[str, str, str]


class OperationState(msgspec.Struct, forbid_unknown_fields=True):
    """One operation's saved state: where the poller stands, and what it counted."""

    cursor: int | None
    origin: int | None
    requests: dict[str, int]
    tally: TallyState
    quota_paused_until: float | None = None
    skipped_seconds: int = 0  # given up past max_catchup, never counted
    last_skip: float | None = None  # when the last span was given up


class _V3Counts(msgspec.Struct, forbid_unknown_fields=True):
    """The counts as version 3 of the database stored them: label-set maps as lists of tuples."""

    interactions: list[tuple[str, str, str, int]]  # label set, count
    received: int
    duplicates: int
    rejected: dict[str, int]
    overflow: dict[str, int]
    by_window: dict[int, list[tuple[str, str, str, int]]]
    last_window: list[tuple[str, str, str, int, float]]  # label set, value, last non-zero time
    seen: list[tuple[int, bytes, int]]
    outcomes: list[tuple[str, str, int]] = []
    sessions_total: dict[str, int] = {}
    transferred_total: dict[str, int] = {}
    session_buckets: dict[int, bytes] = {}
    session_transfers: bytes = b""
    customers_last_window: dict[str, int] = {}
    outside_range: int = 0
    newest: int | None = None


class _V3OperationState(msgspec.Struct, forbid_unknown_fields=True):
    cursor: int | None
    origin: int | None
    requests: dict[str, int]
    counts: _V3Counts
    quota_paused_until: float | None = None
    skipped_seconds: int = 0
    last_skip: float | None = None


class _V2OperationState(msgspec.Struct, forbid_unknown_fields=True):
    """An operation in the JSON state file of version 2: the counts flat beside the cursor,
    and sessions as (bucket, digest, transferred) triples."""

    cursor: int | None
    origin: int | None
    interactions: list[tuple[str, str, str, int]]
    received: int
    duplicates: int
    rejected: dict[str, int]
    overflow: dict[str, int]
    requests: dict[str, int]
    by_window: dict[int, list[tuple[str, str, str, int]]]
    last_window: list[tuple[str, str, str, int, float]]
    seen: list[tuple[int, bytes, int]]
    quota_paused_until: float | None = None
    outcomes: list[tuple[str, str, int]] = []
    sessions_total: dict[str, int] = {}
    transferred_total: dict[str, int] = {}
    sessions: list[tuple[int, int, bool]] = []
    customers_last_window: dict[str, int] = {}
    skipped_seconds: int = 0
    last_skip: float | None = None
    outside_range: int = 0
    newest: int | None = None


class _V2StateFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    saved_at: float
    operations: dict[str, _V2OperationState]


class _Version(msgspec.Struct):
    version: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(OperationState)

# A bucket's sessions are the digests of all its rows, a row per save that added to it.
_BUCKETS_TABLE = """CREATE TABLE IF NOT EXISTS session_buckets (
    operation TEXT NOT NULL, bucket INTEGER NOT NULL, digests BLOB NOT NULL
)"""
_BUCKETS_INDEX = (
    "CREATE INDEX IF NOT EXISTS session_buckets_by_bucket ON session_buckets (operation, bucket)"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY, saved_at REAL NOT NULL, state BLOB NOT NULL
) WITHOUT ROWID;
{_BUCKETS_TABLE};
{_BUCKETS_INDEX};
CREATE TABLE IF NOT EXISTS session_transfers (
    operation TEXT NOT NULL, bucket INTEGER NOT NULL, digests BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS session_transfers_by_bucket ON session_transfers (operation, bucket);
CREATE TABLE IF NOT EXISTS session_journal (
    operation TEXT NOT NULL, seq INTEGER NOT NULL, generation INTEGER NOT NULL,
    sessions BLOB NOT NULL, ended BLOB NOT NULL,
    PRIMARY KEY (operation, seq)
);
CREATE TABLE IF NOT EXISTS recontact_customers (
    operation TEXT NOT NULL, last INTEGER NOT NULL, key INTEGER NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (operation, last, key)
) WITHOUT ROWID;
"""


def _signed(key: int) -> int:
    """A 64-bit digest as SQLite's signed INTEGER."""
    return key - (1 << 64) if key >= 1 << 63 else key


def _unsigned(key: int) -> int:
    return key + (1 << 64) if key < 0 else key


class StoreError(Exception):
    """The database cannot be used: damaged, or of another version."""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed save survives a power cut too
        # Copied back into the database once the log passes 1 MB rather than SQLite's 4 MB: a
        # save at 1M open sessions logs 0.5-0.8 MB, and the default let about eight of them
        # pile up for one save to copy (20 ms more in that save); this way each save copies
        # about what it wrote (2 ms), and the log file stays small.
        db.execute("PRAGMA wal_autocheckpoint=256")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file starts with its header
        elif row[0] in (3, 4, 5, 6):
            _upgrade(db, row[0])
        elif row[0] != VERSION:
            raise StoreError(f"state database version {row[0]}, this exporter reads {VERSION}")
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise StoreError(f"damaged database: {verdict}")
    except (sqlite3.Error, StoreError):
        db.close()
        raise
    return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _encode_tally(tally: TallyState) -> msgspec.Raw:
    """The tally as the operation's row holds it: without the sessions and customers, which
    are rows of their own."""
    small = msgspec.structs.replace(
        tally,
        session_buckets={},
        session_transfers=b"",
        open_sessions={},
        recontact_customers={},
        journal_generation=0,
        journal_entries=0,
    )
    return msgspec.Raw(_ENCODER.encode(small))


def _write_operation(
    db: sqlite3.Connection,
    name: str,
    state: OperationState,
    changes: Changes | None,
    tally: msgspec.Raw | None = None,
) -> None:
    """One operation's rows, inside the caller's transaction. Without `changes`, its sessions
    are replaced by those the state carries; with them, only what changed is written.
    `tally`, if given, is the state's tally encoded already (`_encode_tally`)."""
    encoded = _encode_tally(state.tally) if tally is None else tally
    db.execute(
        "INSERT OR REPLACE INTO operations VALUES (?, ?, ?)",
        (name, time.time(), _ENCODER.encode(msgspec.structs.replace(state, tally=encoded))),
    )
    if changes is None:
        db.execute("DELETE FROM session_buckets WHERE operation = ?", (name,))
        db.execute("DELETE FROM session_transfers WHERE operation = ?", (name,))
        buckets = state.tally.session_buckets
        transfers = {max(buckets, default=0): state.tally.session_transfers}
    else:
        if changes.floor is not None:
            for table in ("session_buckets", "session_transfers"):
                db.execute(
                    f"DELETE FROM {table} WHERE operation = ? AND bucket + 600 <= ?",
                    (name, changes.floor),
                )
        buckets, transfers = changes.buckets, changes.transfers
    db.executemany(
        "INSERT INTO session_buckets VALUES (?, ?, ?)",
        [(name, b, blob) for b, blob in buckets.items()],
    )
    db.executemany(
        "INSERT INTO session_transfers VALUES (?, ?, ?)",
        [(name, b, blob) for b, blob in transfers.items() if blob],
    )
    _write_conversations(db, name, state, changes)


def _write_conversations(
    db: sqlite3.Connection, name: str, state: OperationState, changes: Changes | None
) -> None:
    """Open sessions as a journal entry (or, without `changes`, as the whole journal anew), and
    re-contact customers, by their last session's end: all of them, or the changes (which then
    fall on the newest pages).

    A customer whose new session ended keeps the row of their earlier one until the floor
    (the re-contact window and a horizon) passes it, and a load reads their latest row last:
    deleting it at once cost a page written per customer, anywhere in the table (at a day of
    1M sessions from 300,000 customers, 35-40 ms of a 50 ms save). The table holds a row per
    session that ended with a customer within the floor, rather than one per customer."""
    if changes is None:
        db.execute("DELETE FROM session_journal WHERE operation = ?", (name,))
        db.execute("DELETE FROM recontact_customers WHERE operation = ?", (name,))
        sessions, customers = state.tally.open_sessions, state.tally.recontact_customers
        _append_journal(db, name, journal.Entry(sessions, set(), 0, None))
    else:
        talk = changes.conversations
        if talk.customers_floor is not None:
            db.execute(
                "DELETE FROM recontact_customers WHERE operation = ? AND last < ?",
                (name, talk.customers_floor),
            )
        entry = journal.Entry(talk.sessions, talk.gone, talk.generation, talk.drop_before)
        _append_journal(db, name, entry)
        customers = talk.customers
    db.executemany(
        "INSERT OR REPLACE INTO recontact_customers VALUES (?, ?, ?, ?)",
        [(name, v >> 2, _signed(k), v) for k, v in customers.items()],
    )


def _append_journal(db: sqlite3.Connection, name: str, entry: journal.Entry) -> None:
    """The entry as rows of the operation's session journal, after its others, a row per
    `_JOURNAL_ROW` sessions (a whole image of a million is not one 40 MB row); and the rows of
    older generations deleted if the entry completes an image."""
    keys = list(entry.sessions)
    if keys or entry.ended:
        (last,) = db.execute(
            "SELECT max(seq) FROM session_journal WHERE operation = ?", (name,)
        ).fetchone()
        seq = 0 if last is None else last + 1
        for at in range(0, max(len(keys), 1), _JOURNAL_ROW):
            part = (
                entry.sessions
                if len(keys) <= _JOURNAL_ROW  # a poll's changes: one row, no copy
                else {k: entry.sessions[k] for k in keys[at : at + _JOURNAL_ROW]}
            )
            ended = pack(entry.ended) if at == 0 else b""  # replayed before any session
            db.execute(
                "INSERT INTO session_journal VALUES (?, ?, ?, ?, ?)",
                (name, seq, entry.generation, journal.pack(part), ended),
            )
            seq += 1
    if entry.drop_before is not None:
        db.execute(
            "DELETE FROM session_journal WHERE operation = ? AND generation < ?",
            (name, entry.drop_before),
        )


_JOURNAL_ROW = 65_536


def _read_operations(db: sqlite3.Connection) -> dict[str, OperationState]:
    out: dict[str, OperationState] = {}
    for name, blob in db.execute("SELECT name, state FROM operations"):
        state = _DECODER.decode(blob)
        parts: dict[int, list[bytes]] = {}
        for bucket, blob in db.execute(
            "SELECT bucket, digests FROM session_buckets WHERE operation = ?", (name,)
        ):
            parts.setdefault(bucket, []).append(blob)
        buckets = {bucket: b"".join(blobs) for bucket, blobs in parts.items()}
        transfers = b"".join(
            blob
            for (blob,) in db.execute(
                "SELECT digests FROM session_transfers WHERE operation = ?", (name,)
            )
        )
        rows = db.execute(
            "SELECT generation, sessions, ended FROM session_journal WHERE operation = ?"
            " ORDER BY seq",
            (name,),
        ).fetchall()
        sessions, entries = journal.replay(
            ((blob, unpack(ended)) for _, blob, ended in rows), OPEN_SIZE
        )
        customers = {
            _unsigned(k): v
            for k, v in db.execute(
                "SELECT key, value FROM recontact_customers WHERE operation = ? ORDER BY last",
                (name,),
            )
        }  # a customer's latest row read last (see `_write_conversations`)
        tally = msgspec.structs.replace(
            state.tally,
            session_buckets=buckets,
            session_transfers=transfers,
            open_sessions=sessions,
            recontact_customers=customers,
            journal_generation=max((g for g, _, _ in rows), default=0),
            journal_entries=entries,
        )
        out[name] = msgspec.structs.replace(state, tally=tally)
    return out


def _from_v2(old: _V2OperationState) -> OperationState:
    fields = msgspec.structs.asdict(old)
    sessions = fields.pop("sessions")
    buckets: dict[int, list[int]] = {}
    for bucket, key, _ in sessions:
        buckets.setdefault(bucket, []).append(key)
    fields["session_buckets"] = {b: pack(keys) for b, keys in buckets.items()}
    fields["session_transfers"] = pack(key for _, key, moved in sessions if moved)
    counted = {name: fields.pop(name) for name in _V3Counts.__struct_fields__}
    return _from_v3(_V3OperationState(**fields, counts=_V3Counts(**counted)))


def _from_v3(old: _V3OperationState) -> OperationState:
    """The one place that names every counted field: a format upgrade, run once."""
    c = old.counts
    counts = Counts(
        interactions={(ch, rp, a): n for ch, rp, a, n in c.interactions},
        last_window={(ch, rp, a): n for ch, rp, a, n, _ in c.last_window},
        received=c.received,
        duplicates=c.duplicates,
        outside_range=c.outside_range,
        newest=c.newest,
        rejected={**Counts().rejected, **c.rejected},
        overflow={**Counts().overflow, **c.overflow},
        outcomes={(ch, o): n for ch, o, n in c.outcomes},
        sessions_total=c.sessions_total,
        transferred_total=c.transferred_total,
        customers_last_window=c.customers_last_window,
    )
    tally = TallyState(
        counts=counts,
        by_window={s: {(ch, rp, a): n for ch, rp, a, n in w} for s, w in c.by_window.items()},
        last_active={(ch, rp, a): t for ch, rp, a, _, t in c.last_window if t},
        seen=c.seen,
        session_buckets=c.session_buckets,
        session_transfers=c.session_transfers,
    )
    return OperationState(
        cursor=old.cursor,
        origin=old.origin,
        requests=old.requests,
        tally=tally,
        quota_paused_until=old.quota_paused_until,
        skipped_seconds=old.skipped_seconds,
        last_skip=old.last_skip,
    )


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Bring a database of an older version to this one in one transaction: a crash leaves it
    as it was. Version 5 added the conversation tables (the schema creates them) and fields
    that default to empty; each step below is a change of format. The version is raised even
    where no step applies, so that an older exporter does not read what it would misread."""
    with _transaction(db):
        if version == 3:
            _upgrade_v3(db)
        if version == 5:
            _upgrade_v5(db)
        _upgrade_v6(db)
        db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (VERSION,))
    log.info("state database upgraded", extra={"from_version": version, "to_version": VERSION})


def _upgrade_v3(db: sqlite3.Connection) -> None:
    """Version 4 stores the counts as maps: every operation's row is rewritten. Sessions keep
    their rows."""
    v3 = msgspec.msgpack.Decoder(_V3OperationState)
    for name, blob in db.execute("SELECT name, state FROM operations").fetchall():
        try:
            state = _from_v3(v3.decode(blob))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreError(f"damaged state of operation {name!r}: {exc}") from None
        db.execute("UPDATE operations SET state = ? WHERE name = ?", (_ENCODER.encode(state), name))


def _upgrade_v5(db: sqlite3.Connection) -> None:
    """Version 6 keeps the open sessions as a journal (`counting.journal`) instead of a row
    each: each operation's rows become its journal's first row."""
    names = [n for (n,) in db.execute("SELECT DISTINCT operation FROM open_sessions")]
    for name in names:
        sessions = {
            _unsigned(k): blob
            for k, blob in db.execute(
                "SELECT key, state FROM open_sessions WHERE operation = ?", (name,)
            )
        }
        _append_journal(db, name, journal.Entry(sessions, set(), 0, None))
    db.execute("DROP TABLE open_sessions")


def _upgrade_v6(db: sqlite3.Connection) -> None:
    """Version 7 appends each save's new sessions to their bucket as a row of their own, where
    a bucket was one row rewritten whole (its primary key forbids a second row): the table is
    made anew with the same rows, unless it has the new shape already."""
    (sql,) = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'session_buckets'"
    ).fetchone()
    if "PRIMARY KEY" not in sql:
        return
    db.execute("ALTER TABLE session_buckets RENAME TO session_buckets_v6")
    db.execute(_BUCKETS_TABLE)
    db.execute("INSERT INTO session_buckets SELECT * FROM session_buckets_v6")
    db.execute("DROP TABLE session_buckets_v6")  # and the index the schema put on it
    db.execute(_BUCKETS_INDEX)


class StateStore:
    """The state database of the whole process; each operation writes its own rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.save_failures = 0  # for wolkvox_state_save_failures_total
        self.last_save_ok = True  # /-/ready is false while saves fail
        self._secret: bytes | None = None
        # Per operation, the tally last saved and its encoding: a poller that counted nothing
        # new saves the same tally object again, and only where it stands is encoded.
        self._tallies: dict[str, tuple[TallyState, msgspec.Raw]] = {}

    def secret(self) -> bytes:
        """The key of the customer digests this database holds (see state.secret)."""
        with self._lock:
            if self._secret is None:
                try:
                    self._secret = secret.load_or_create(secret.path_for(self.path))
                except OSError as exc:
                    # Like a failing save: counting goes on; customers are recognised as
                    # re-contacts until the next restart only.
                    log.error(
                        "cannot keep the customer digest key beside the state; using one "
                        "for this run only",
                        extra={"path": str(self.path), "error": _reason(exc)},
                    )
                    self._secret = secret.ephemeral()
            return self._secret

    def check_writable(self) -> None:
        """Raise OSError, with a reason, unless a state file can be written where configured:
        found at start, not as a log line at every poll."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".{self.path.name}.{os.getpid()}.probe"
        try:
            with open(probe, "wb") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        finally:
            probe.unlink(missing_ok=True)
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise PermissionError(f"{self.path} is not writable")

    def remove_leftovers(self) -> None:
        """Delete temp files that crashed saves or migrations left behind
        (`.state.json.<pid>.tmp` of processes that are gone), so they do not pile up."""
        prefix = f".{self.path.name}."
        for leftover in self.path.parent.glob(f"{prefix}*.tmp*"):
            pid = leftover.name[len(prefix) :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            try:
                leftover.unlink()
                log.info(
                    "removed a temp file of an interrupted save", extra={"path": str(leftover)}
                )
            except OSError:
                pass

    def load(self) -> dict[str, OperationState]:
        """Open the database, migrating a JSON state file of version 2; a damaged one is moved
        aside and an empty state returned."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            try:
                with open(self.path, "rb") as f:
                    head = f.read(len(SQLITE_MAGIC))
            except FileNotFoundError:
                log.info("no state file yet; starting fresh", extra={"path": str(self.path)})
                return {}
            except OSError as exc:
                self._set_aside(f"cannot read it: {exc.strerror}")
                return {}
            # An empty file is a database whose pages are all still in its write-ahead log.
            if head not in (SQLITE_MAGIC, b"") and not self._migrate():
                return {}
            try:
                self._db = _connect(self.path)
                operations = _read_operations(self._db)
            except (sqlite3.Error, StoreError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                self._set_aside(str(exc))
                return {}
        log.info("state loaded", extra={"path": str(self.path), "operations": len(operations)})
        return operations

    def _migrate(self) -> bool:
        """Turn a JSON state file of version 2 into the database, in place. The JSON stays
        beside as `<name>.v2.json`; the database replaces it in one rename, so a crash leaves
        one or the other."""
        try:
            data = self.path.read_bytes()
            version = msgspec.json.decode(data, type=_Version).version
            if version != 2:
                self._set_aside(
                    f"state file version {version}, this exporter reads 2 and {VERSION}"
                )
                return False
            old = msgspec.json.decode(data, type=_V2StateFile)
        except OSError as exc:
            self._set_aside(f"cannot read it: {exc.strerror}")
            return False
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._set_aside(f"not a valid state file: {exc}")
            return False
        atomic_write(self.path.with_name(f"{self.path.name}.v2.json"), data)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        with closing(_connect(tmp)) as db, _transaction(db):
            for name, op in old.operations.items():
                _write_operation(db, name, _from_v2(op), None)
        os.replace(tmp, self.path)
        log.info(
            "state file migrated to a database; the JSON file is kept beside",
            extra={"path": str(self.path), "operations": len(old.operations)},
        )
        return True

    def _set_aside(self, reason: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    os.replace(extra, aside.with_name(aside.name + suffix))
            moved = f"moved aside to {aside}"
        except OSError as exc:
            moved = f"could not move it aside ({exc.strerror})"
        log.error(
            "state file unusable; starting fresh without it",
            extra={"path": str(self.path), "reason": reason, "action": moved},
        )

    def save(self, name: str, state: OperationState, changes: Changes | None = None) -> bool:
        """Write one operation's rows in one transaction: its counters, and either the
        session changes given or (without them) every session the state carries. Returns
        whether it was saved; a failure is logged and counted, and the caller keeps its
        changes for the next save."""
        with self._lock:
            try:
                if self._db is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._db = _connect(self.path)
                cached = self._tallies.get(name)
                if cached is None or cached[0] is not state.tally:
                    cached = self._tallies[name] = (state.tally, _encode_tally(state.tally))
                with _transaction(self._db) as db:
                    _write_operation(db, name, state, changes, cached[1])
            except (OSError, sqlite3.Error, StoreError) as exc:
                self.save_failures += 1
                self.last_save_ok = False
                log.error(
                    "could not save state; a restart would resume from the last good save",
                    extra={"path": str(self.path), "error": _reason(exc)},
                )
                return False
            self.last_save_ok = True
            return True

    def release(self, name: str) -> None:
        """Drop what is kept in memory for an operation no longer polled (the tally it last
        saved, with its fingerprints); its rows stay in the database for a later return."""
        with self._lock:
            self._tallies.pop(name, None)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def atomic_write(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` so that a crash at any instant leaves the old or the new file:
    temp file, fsync, rename, fsync of the directory."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
