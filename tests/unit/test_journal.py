"""The open sessions' journal in the state database: a restart finds exactly the sessions open at
the last save, whatever sequence of saves, images and restarts came before, and the journal does
not grow with uptime."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.counting import journal
from exporter.counting.conversations import Open
from exporter.counting.tally import Tally
from exporter.state import store as store_module
from exporter.state.store import OperationState, StateStore
from tests.support.harness import operation_settings

SECRET = b"k" * 32
T0 = 1_790_000_000


def _tally() -> Tally:
    return Tally(operation_settings(), SECRET)


def _save(store: StateStore, tally: Tally) -> None:
    state = OperationState(
        cursor=None, origin=None, requests={}, tally=tally.export(sessions=False)
    )
    assert store.save("op", state, tally.pending())
    tally.saved()


def _journal(path: Path) -> tuple[int, int]:
    """Rows and entries (sessions written, ended digests) the journal holds."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT sessions, ended FROM session_journal").fetchall()
    size = 8 + len(Open(0, 0, 0, -1, 0, 0, 0, 0).pack())
    return len(rows), sum(len(s) // size + len(e) // 8 for s, e in rows)


# Steps: open or change session k, end it, save, or restart from the database.
_STEPS = st.lists(
    st.tuples(st.sampled_from(("touch", "touch", "end", "save", "restart")), st.integers(0, 5)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=80, deadline=None)
@given(_STEPS)
def test_a_restart_finds_exactly_the_sessions_open_at_the_last_save(steps):
    with (
        tempfile.TemporaryDirectory() as d,
        mock.patch.object(journal, "FLOOR", 0),
        mock.patch.object(journal, "SLICE", 2),
        mock.patch.object(journal, "SLICES", 3),
        mock.patch.object(store_module, "_JOURNAL_ROW", 2),  # an entry over several rows
    ):
        path = Path(d) / "state.db"
        store, tally = StateStore(path), _tally()
        saved: dict[int, bytes] = {}
        most_open = most_changed = changed = 0
        for n, (step, k) in enumerate(steps):
            talk = tally.conversations
            key = k + 1
            if step == "touch":
                talk.open[key] = Open(T0 + k, T0 + k + n, T0 + n, -1, n, 0, 0, k).pack()
                talk._changes.sessions[key] = b""
                changed += 1
            elif step == "end" and key in talk.open:
                del talk.open[key]
                talk._changes.gone.add(key)
                changed += 1
            elif step == "save":
                _save(store, tally)
                saved = dict(talk.open)
                most_changed, changed = max(most_changed, changed), 0
            elif step == "restart":  # what was not saved is lost, as in a crash
                store = StateStore(path)
                tally = _tally()
                tally.restore(
                    store.load().get("op", OperationState(None, None, {}, tally.export())).tally
                )
                assert tally.conversations.open == saved
                changed = 0
            most_open = max(most_open, len(tally.conversations.open))
        _save(store, tally)
        back = StateStore(path).load()["op"].tally
        assert back.open_sessions == tally.conversations.open
        # Bounded: what triggers a new image, plus one image and the changes written meanwhile.
        _, entries = _journal(path)
        most_changed = max(most_changed, changed)
        assert entries <= 3 * most_open + (3 + 2) * (most_changed + 2) + len(steps) // 4 + 8


def test_sessions_quiet_for_many_saves_survive_the_journal_written_anew(tmp_path):
    """Ten sessions open and quiet while one other changes at every save: the journal is
    written anew several times, and a restart still finds all eleven as they were."""
    path = tmp_path / "state.db"
    store, tally = StateStore(path), _tally()
    talk = tally.conversations
    for k in range(10):
        talk.open[k + 1] = Open(T0 + k, T0 + k, T0 + k, -1, 1, 0, 0, k).pack()
        talk._changes.sessions[k + 1] = b""
    with mock.patch.object(journal, "FLOOR", 0), mock.patch.object(journal, "SLICE", 3):
        for n in range(200):
            talk.open[99] = Open(T0, T0 + n, T0 + n, -1, n, 0, 0, 99).pack()
            talk._changes.sessions[99] = b""
            _save(store, tally)
    rows, entries = _journal(path)
    assert entries < 60, (rows, entries)  # written anew: 200 saves of one change each, and more
    assert StateStore(path).load()["op"].tally.open_sessions == talk.open


def test_a_session_ended_and_started_again_before_a_save_is_open_after_a_restart(tmp_path):
    """A digest can end and start again between two saves (a session id reused after the
    horizon): the entry holds it as ended and as open, over several rows, and it stays open."""
    path = tmp_path / "state.db"
    store, tally = StateStore(path), _tally()
    talk = tally.conversations
    for k in range(1, 8):
        talk.open[k] = Open(T0 + k, T0 + k, T0 + k, -1, 1, 0, 0, k).pack()
        talk._changes.sessions[k] = b""
    _save(store, tally)
    del talk.open[1]
    talk._changes.gone.add(1)
    for k in range(1, 8):  # session 1 again, and changes to the others
        talk.open[k] = Open(T0 + k, T0 + k + 9, T0 + k + 9, -1, 2, 0, 0, k).pack()
        talk._changes.sessions[k] = b""
    with mock.patch.object(store_module, "_JOURNAL_ROW", 2):
        _save(store, tally)
    assert StateStore(path).load()["op"].tally.open_sessions == talk.open


def test_a_long_run_keeps_a_journal_the_size_of_what_is_open(tmp_path):
    """A thousand saves of a hundred sessions changing: the journal is written anew as it
    grows, and holds a few times what is open, not what was ever written."""
    path = tmp_path / "state.db"
    store, tally = StateStore(path), _tally()
    talk = tally.conversations
    with mock.patch.object(journal, "FLOOR", 500):
        for n in range(1000):
            for k in range(n, n + 5):  # five start, five of the hundred open end
                key = k % 100 + 1
                talk.open[key] = Open(T0 + k, T0 + n, T0 + n, -1, n, 0, 0, k).pack()
                talk._changes.sessions[key] = b""
            _save(store, tally)
    rows, entries = _journal(path)
    assert entries <= 2 * 100 + 500 + 100 + 5 * 16, (rows, entries)
    assert StateStore(path).load()["op"].tally.open_sessions == talk.open


def test_a_database_of_version_5_keeps_its_open_sessions(tmp_path, caplog):
    """Version 5 kept a row per open session: the upgrade turns them into the journal's first
    row, and the sessions are followed on as before."""
    path = tmp_path / "state.db"
    store, tally = StateStore(path), _tally()
    talk = tally.conversations
    for k in range(50):
        talk.open[k + 1] = Open(T0 + k, T0 + k + 60, T0 + k + 60, -1, 3, 0, 0, k).pack()
    store.save("op", OperationState(None, None, {}, tally.export()))
    store.close()
    with closing(sqlite3.connect(path)) as db:  # as version 5 wrote it
        db.execute("DROP TABLE session_journal")
        db.execute(
            "CREATE TABLE open_sessions (operation TEXT NOT NULL, first INTEGER NOT NULL,"
            " key INTEGER NOT NULL, state BLOB NOT NULL, PRIMARY KEY (operation, first, key))"
            " WITHOUT ROWID"
        )
        db.executemany(
            "INSERT INTO open_sessions VALUES ('op', ?, ?, ?)",
            [(T0 + k - 1, k, blob) for k, blob in talk.open.items()],
        )
        db.execute("UPDATE meta SET value = 5 WHERE key = 'version'")
        db.commit()
    with caplog.at_level("INFO"):
        back = StateStore(path).load()["op"].tally
    assert "state database upgraded" in caplog.text
    assert back.open_sessions == talk.open
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (7,)
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
    assert "open_sessions" not in tables
