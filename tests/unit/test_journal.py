"""The open sessions' journal in the state database: a restart finds exactly the sessions open at
the last save, whatever sequence of saves, images and restarts came before, and the journal does
not grow with uptime."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.counting import journal
from exporter.counting.conversations import Conversations, Open
from exporter.counting.tally import Tally
from exporter.counting.wheel import Scan, Wheel
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


def _touch(talk: Conversations, key: int, state: Open) -> None:
    """Open or change a session as a poll does: kept, noted as changed, filed on the
    end-time wheel (where an image reads the open sessions)."""
    talk.channel_index("web")  # channel 0
    talk._store(key, state)


def _journal_generations(path: Path) -> set[int]:
    with closing(sqlite3.connect(path)) as db:
        return {g for (g,) in db.execute("SELECT generation FROM session_journal")}


# Steps: open or change session k (filed on the wheel where it is due, or left filed where it
# was, as a merge leaves it), end it, let time pass (sessions end or are filed again later on
# the wheel), save, or restart from the database.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(("touch", "touch", "extend", "end", "tick", "save", "restart")),
        st.integers(0, 5),
    ),
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
        clock = T0
        for n, (step, k) in enumerate(steps):
            talk = tally.conversations
            key = k + 1
            if step == "touch":  # due about an hour after T0 + k + n
                _touch(talk, key, Open(T0 + k, T0 + k + n, T0 + n, -1, n, 0, 0, k))
                changed += 1
            elif step == "extend" and key in talk.open:  # as a merge: stays filed where it was
                talk.open[key] = Open(T0 + k, T0 + k + n + 300, T0 + n, -1, n, 0, 0, k).pack()
                talk._changes.sessions[key] = b""
                changed += 1
            elif step == "end" and key in talk.open:
                del talk.open[key]
                talk._changes.gone.add(key)
                changed += 1
            elif step == "tick":  # buckets taken out, their sessions ended or filed again
                clock = max(clock, T0 + 3600 + n + 10 * k - 20)
                changed += talk.end_before(clock)
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
        _touch(talk, k + 1, Open(T0 + k, T0 + k, T0 + k, -1, 1, 0, 0, k))
    with mock.patch.object(journal, "FLOOR", 0), mock.patch.object(journal, "SLICE", 3):
        for n in range(200):
            _touch(talk, 99, Open(T0, T0 + n, T0 + n, -1, n, 0, 0, 99))
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
        _touch(talk, k, Open(T0 + k, T0 + k, T0 + k, -1, 1, 0, 0, k))
    _save(store, tally)
    del talk.open[1]
    talk._changes.gone.add(1)
    for k in range(1, 8):  # session 1 again, and changes to the others
        _touch(talk, k, Open(T0 + k, T0 + k + 9, T0 + k + 9, -1, 2, 0, 0, k))
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
                _touch(talk, key, Open(T0 + k, T0 + n, T0 + n, -1, n, 0, 0, k))
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


# A wheel's keys when an image starts: key -> (second it is filed under, second it is due); a
# merged session is filed before it is due. Then steps: a key changes (filed at its new due,
# later), time passes (buckets taken out, as `end_before` does), or the image reads on.
_FILED = st.dictionaries(
    st.integers(1, 12),
    st.tuples(st.integers(0, 600), st.integers(0, 300)).map(lambda f: (f[0], f[0] + f[1])),
)
_WHEEL_STEPS = st.lists(
    st.tuples(st.sampled_from(("change", "time", "read", "read")), st.integers(1, 14)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_FILED, _WHEEL_STEPS)
# The bucket being read comes due: one of its sessions ends, two are filed anew in it.
@example({1: (0, 0), 2: (0, 50), 3: (0, 50)}, [("read", 4), ("time", 2)])
def test_an_image_read_off_the_wheel_meets_every_session_it_must(filed, steps):
    """Every session filed when the image starts, still open and unchanged when it ends, and
    not filed again beyond its reach, is read at least once; the reading ends."""
    wheel = Wheel(60)
    due: dict[int, int] = {}
    for key, (at, when) in filed.items():
        wheel.file(key, at)
        due[key] = when
    scan: Scan | None = wheel.scan()
    assert scan is not None
    reach = scan.reach
    must, met, clock = set(due), set(), 0
    for step, x in steps:
        if step == "change":  # written by the change: not the image's to meet any more
            key = x
            due[key] = max(due.get(key, clock), clock) + 7 * x
            wheel.file(key, due[key])
            must.discard(key)
        elif step == "time":
            clock += 13 * x
            for keys in wheel.before(clock):
                for key in keys:
                    if key not in due:
                        continue  # ended, filed stale
                    if due[key] < clock:
                        del due[key]
                        must.discard(key)
                    else:
                        wheel.file(key, due[key])
                        if due[key] >= reach:  # `end_before` notes it as changed
                            must.discard(key)
        elif scan is not None:
            part, scan = wheel.take(scan, x % 4 + 1)
            met.update(part)
    for _ in range(1000):
        if scan is None:
            break
        part, scan = wheel.take(scan, 3)
        met.update(part)
    assert scan is None
    assert must <= met, sorted(must - met)


def test_a_quiet_session_filed_again_beyond_the_image_under_way_survives_it(tmp_path):
    """A session merged before an image starts stays filed where it was, though due later;
    while the image is read, its bucket comes due and it is filed again beyond the buckets the
    image reads. Unchanged since the image started, it must be written all the same, or the
    image's completion drops it with the older generation."""
    path = tmp_path / "state.db"
    store, tally = StateStore(path), _tally()
    talk = tally.conversations
    for k in range(1, 6):  # due in the first minute of the wheel
        _touch(talk, k, Open(T0, T0, T0, -1, 1, 0, 0, k))
    _touch(talk, 9, Open(T0 + 60, T0 + 60, T0 + 60, -1, 1, 0, 0, 9))  # the next minute
    talk.open[9] = Open(T0 + 60, T0 + 7200, T0 + 7200, -1, 2, 0, 0, 9).pack()  # merged
    talk._changes.sessions[9] = b""
    _save(store, tally)
    with mock.patch.object(journal, "SLICE", 1), mock.patch.object(journal, "FLOOR", 0):
        talk._journal.entries = 100  # due to be written anew
        _save(store, tally)  # the image starts and reads one session of the first minute
        generation = talk._journal.generation
        assert _journal_generations(path) == {0, generation}
        assert talk.end_before(T0 + 3600 + 90) == 5  # the first five end; session 9 is moved
        for _ in range(10):  # until the image is complete and older rows are deleted
            _save(store, tally)
            if _journal_generations(path) == {generation}:
                break
    assert _journal_generations(path) == {generation}
    assert list(talk.open) == [9]
    assert StateStore(path).load()["op"].tally.open_sessions == talk.open


def test_restarts_more_often_than_an_image_takes_keep_the_journal_bounded(tmp_path):
    """Restarted every three saves while an image takes twenty (a crash loop; or a deploy a
    day at five-minute polls, when an image of a million sessions takes 128 of them): the
    journal is still written anew, and does not grow with the runs."""
    path = tmp_path / "state.db"
    with mock.patch.object(journal, "FLOOR", 0), mock.patch.object(journal, "SLICE", 2):
        for run in range(30):
            store, tally = StateStore(path), _tally()
            saved = store.load().get("op")
            if saved is not None:
                tally.restore(saved.tally)
            talk = tally.conversations
            for n in range(3):  # 40 sessions open; each save changes half of them
                step = 3 * run + n
                for k in range(20 * (step % 2), 20 * (step % 2) + 20):
                    _touch(talk, k + 1, Open(T0 + k, T0 + k + step, T0 + step, -1, 1, 0, 0, k))
                _save(store, tally)
            store.close()
    rows, entries = _journal(path)
    assert entries <= 2 * 40 + 3 * (20 + 2) + 40, (rows, entries)
    assert StateStore(path).load()["op"].tally.open_sessions == talk.open
