"""Exactly once across restarts: the state file, and what happens when it is damaged."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from array import array
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from exporter.api import windowing
from exporter.api.client import TokenGate
from exporter.cli import main as cli
from exporter.counting.counts import Counts, TallyState
from exporter.counting.seen import Changes, unpack
from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.state import store as state_module
from exporter.state.store import OperationState, StateStore
from exporter.tools.backfill.request import parse_when
from exporter.tools.simulator import Reply, Traffic
from tests.support.harness import (
    Clock,
    assert_kpis,
    expected_counts,
    make_config,
    make_poller,
    other_poller,
)

START = 1_790_000_100


def poll(poller, clock: Clock, times: int) -> None:
    for _ in range(times):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()


def restart(cfg, clock: Clock, path: Path):
    store = StateStore(path)
    saved = store.load()
    return make_poller(cfg, clock, TokenGate(0), store=store, saved=saved.get("main"))


def test_state_written_mid_poll_is_consistent(sim_factory, tmp_path):
    """A poll that fails half way saves what it counted; a restart does not count it again."""
    clock = Clock(START)
    traffic = Traffic(seed=8, rate_per_minute=200, daily_curve=False)
    sim, url = sim_factory(traffic, clock)
    cfg = make_config(url, retries=0)
    path = tmp_path / "state.json"
    poller = restart(cfg, clock, path)
    poll(poller, clock, 2)
    clock.now += 3600  # twelve windows to catch up...
    original_answer = sim.answer
    calls = 0

    def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 5:  # ...and the API fails on the fifth
            return Reply(500, b"")
        return original_answer(*args, **kwargs)

    sim.answer = flaky
    poll(poller, clock, 1)
    assert not poller.snapshot().up
    poller = restart(cfg, clock, path)
    assert poller.cursor is not None
    poll(poller, clock, 1)
    snap = poller.snapshot()
    assert snap.up and snap.collected_until is not None and poller.origin is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))


def test_a_corrupt_state_file_is_moved_aside_and_reported(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_bytes(b'{"version": 1, "saved_at": 1, "operations": {"main": {"cursor": "yesterday"')
    with caplog.at_level(logging.ERROR):
        assert StateStore(path).load() == {}
    assert not path.exists()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1
    assert "state file unusable; starting fresh" in caplog.text
    assert str(aside[0]) in caplog.text


def test_a_state_file_of_another_version_is_set_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text('{"version": 99, "saved_at": 1, "operations": {}}')
    assert StateStore(path).load() == {}
    assert "version 99" in caplog.text


def test_an_unwritable_state_path_is_logged_and_the_poller_keeps_counting(
    sim_factory, tmp_path, caplog
):
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=1), clock)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = StateStore(blocker / "state.json")
    poller = make_poller(make_config(url), clock, store=store)
    poll(poller, clock, 2)
    assert poller.snapshot().up
    assert "could not save state" in caplog.text
    # Visible beyond the log: a counter for the alert, and /-/ready turns false.
    assert store.save_failures >= 2 and not store.last_save_ok
    app = server.App(CollectorRegistry(), [poller], stores=[store])
    assert poller.ready and not app.ready()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([poller], 300, store))
    assert registry.get_sample_value("wolkvox_state_save_failures_total") == store.save_failures


def test_a_state_path_that_cannot_be_written_is_refused_at_start(tmp_path, capsys):
    """Found by `check` and at start, not as a log line at every poll."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "operations:\n  - {name: a, base_url: 'http://127.0.0.1:1', token: t}\n"
        f"state:\n  path: {blocker / 'state.json'}\n"
    )
    assert cli.main(["check", "--config", str(config_file)]) == 1
    assert "state.path: cannot write a state file at" in capsys.readouterr().err
    assert cli.main(["--config", str(config_file), "--web.listen-address", "127.0.0.1:0"]) == 1
    assert "state.path: cannot write a state file at" in capsys.readouterr().err


def test_an_operation_released_keeps_no_tally_in_memory_and_its_state_on_disk(
    tmp_path, monkeypatch
):
    """A reload that removes an operation releases the tally its store kept for quiet polls
    (its fingerprints with it); the state stays saved for its return."""
    store = StateStore(tmp_path / "state.db")
    tally = TallyState(counts=Counts(received=7))
    state = OperationState(cursor=START, origin=START, requests={}, tally=tally)
    encoded: list[TallyState] = []
    encode = state_module._encode_tally

    def counted(t: TallyState) -> msgspec.Raw:
        encoded.append(t)
        return encode(t)

    monkeypatch.setattr(state_module, "_encode_tally", counted)
    assert store.save("gone", state) and store.save("gone", state)
    assert len(encoded) == 1  # the same tally again: its encoding was kept
    store.release("gone")
    assert store.save("gone", state)
    assert len(encoded) == 2  # nothing was kept for it any more
    store.release("gone")
    assert StateStore(tmp_path / "state.db").load()["gone"].tally.counts.received == 7


def test_temp_files_of_crashed_saves_are_removed(tmp_path):
    state = tmp_path / "state.json"
    gone = tmp_path / ".state.json.999999999.tmp"  # no such process
    mine = tmp_path / f".state.json.{os.getpid()}.tmp"
    other = tmp_path / ".other.json.999999999.tmp"
    for path in (gone, mine, other):
        path.write_text("{")
    StateStore(state).remove_leftovers()
    assert not gone.exists() and mine.exists() and other.exists()


def test_a_span_given_up_past_max_catchup_is_counted_logged_and_kept(sim_factory, tmp_path, caplog):
    """Skipping is the one way the exporter loses records on purpose: it must show as a metric
    that survives restarts, and the log must say what to backfill."""
    clock = Clock(START)
    traffic = Traffic(seed=12, rate_per_minute=30, daily_curve=False)
    _, url = sim_factory(traffic, clock)
    cfg = make_config(url, max_catchup="1h")
    path = tmp_path / "state.json"
    poller = restart(cfg, clock, path)
    poll(poller, clock, 2)
    assert poller.snapshot().skipped_seconds == 0 and poller.snapshot().last_skip is None
    resumed_from = poller.cursor
    assert resumed_from is not None
    clock.now += 3 * 3600  # down for three hours; max_catchup covers only the last one
    with caplog.at_level(logging.WARNING):
        poller = restart(cfg, clock, path)
        poll(poller, clock, 1)
    snap = poller.snapshot()
    assert snap.collected_until is not None
    gap = snap.collected_until - 3600 - resumed_from
    assert gap > 3600 and gap % 300 == 0
    assert snap.skipped_seconds == gap and snap.last_skip == clock.now
    (record,) = [r for r in caplog.records if "max_catchup" in r.getMessage()]
    # The span, as wall time of the operation (Bogota, UTC-5), ready for backfill --from/--to.
    assert record.__dict__["from"] == _wall(resumed_from)
    assert record.__dict__["to"] == _wall(resumed_from + gap)
    zone = cfg.operations[0].zone
    assert parse_when(record.__dict__["from"], zone) == resumed_from  # backfill takes them as-is
    assert parse_when(record.__dict__["to"], zone) == resumed_from + gap
    # Counted: what came before the outage and the last hour; not the skipped span.
    assert poller.origin is not None
    rows = traffic.rows(poller.origin, resumed_from - 1, now=clock.now)
    rows += traffic.rows(resumed_from + gap, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    poller = restart(cfg, clock, path)
    assert poller.snapshot().skipped_seconds == gap
    assert poller.snapshot().last_skip == snap.last_skip


def _wall(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch - 5 * 3600))


def _v3_fields(poller) -> dict[str, Any]:
    """The poller's state as versions 2 and 3 laid it out: the counts and their books as one
    flat struct, label-set maps as lists of tuples."""
    fields = msgspec.structs.asdict(poller.export_state())
    tally = fields.pop("tally")
    c = tally.counts
    old = set(state_module._V3Counts.__struct_fields__)  # counters added since are left out
    fields["counts"] = {
        **{k: v for k, v in msgspec.structs.asdict(c).items() if k in old},
        "interactions": [(*k, n) for k, n in c.interactions.items()],
        "last_window": [(*k, n, tally.last_active.get(k, 0.0)) for k, n in c.last_window.items()],
        "outcomes": [(*k, n) for k, n in c.outcomes.items()],
        "by_window": {s: [(*k, n) for k, n in w.items()] for s, w in tally.by_window.items()},
        "seen": [
            (second, fps[16 * i : 16 * i + 16], n)
            for second, (fps, copies) in tally.rows_seen.items()
            for i, n in enumerate(array("Q", copies))
        ],
        "session_buckets": tally.session_buckets,
        "session_transfers": tally.session_transfers,
    }
    return fields


def _v2_file(poller) -> bytes:
    """The poller's state as the JSON state file of version 2 (before the database) wrote it:
    the counts flat beside the cursor, and sessions as (bucket, digest, transferred) triples."""
    fields = _v3_fields(poller)
    fields.update(fields.pop("counts"))
    buckets, transfers = fields.pop("session_buckets"), fields.pop("session_transfers")
    moved = set(unpack(transfers))
    fields["sessions"] = [
        (bucket, key, key in moved) for bucket, blob in buckets.items() for key in unpack(blob)
    ]
    return msgspec.json.encode({"version": 2, "saved_at": 1.0, "operations": {"main": fields}})


def _polled(sim_factory, seed: int):
    """A poller that has counted four polls of simulated traffic, with what it needs to go on."""
    clock = Clock(START)
    traffic = Traffic(seed=seed, rate_per_minute=120, duplicate_fraction=0.05)
    _, url = sim_factory(traffic, clock)
    cfg = make_config(url)
    poller = make_poller(cfg, clock, TokenGate(0))
    poll(poller, clock, 4)
    return cfg, clock, traffic, poller


def _polls_on_exactly(poller, clock, traffic) -> None:
    """Polling on neither re-counts nor loses a row or a session: the books came across."""
    poll(poller, clock, 3)
    snap = poller.snapshot()
    assert snap.collected_until is not None and poller.origin is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
    assert_kpis(snap, rows)


def test_a_database_of_version_3_is_upgraded_in_place(sim_factory, tmp_path, caplog):
    cfg, clock, traffic, poller = _polled(sim_factory, seed=43)
    before = poller.snapshot()
    fields = _v3_fields(poller)
    counts = fields["counts"]
    buckets = counts.pop("session_buckets")
    transfers = counts.pop("session_transfers")
    counts["session_buckets"], counts["session_transfers"] = {}, b""  # rows of their own
    path = tmp_path / "state.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(state_module._SCHEMA)
        db.execute("INSERT INTO meta VALUES ('version', 3)")
        db.execute(
            "INSERT INTO operations VALUES ('main', 1.0, ?)", (msgspec.msgpack.encode(fields),)
        )
        db.executemany("INSERT INTO session_buckets VALUES ('main', ?, ?)", list(buckets.items()))
        db.execute("INSERT INTO session_transfers VALUES ('main', 0, ?)", (transfers,))
        db.commit()

    with caplog.at_level(logging.INFO):
        poller = restart(cfg, clock, path)
    assert "state database upgraded" in caplog.text
    after = poller.snapshot()
    # Every counter version 3 had, as it was (`late` and the conversations came after it: they
    # start at 0, and sessions open then are not followed).
    assert after.counts.late == 0
    later: dict[str, dict[object, int]] = {
        f: {} for f in Counts.__struct_fields__ if f.startswith(("session_", "sessions_"))
    }
    later.pop("sessions_total")
    assert after.counts == msgspec.structs.replace(before.counts, late=0, **later)
    assert after.collected_until == before.collected_until
    _polls_on_exactly(poller, clock, traffic)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (7,)


def test_a_database_of_version_6_keeps_its_session_buckets(sim_factory, tmp_path, caplog):
    """Version 6 held each session bucket as one row under a primary key, rewritten whole: the
    upgrade keeps every bucket's sessions, and the poller goes on exactly."""
    cfg, clock, traffic, poller = _polled(sim_factory, seed=47)
    before = poller.snapshot()
    path = tmp_path / "state.db"
    assert StateStore(path).save("main", poller.export_state())
    with closing(sqlite3.connect(path)) as db:  # as version 6 wrote it
        rows = db.execute("SELECT operation, bucket, digests FROM session_buckets").fetchall()
        assert len(rows) >= 2
        db.execute("DROP TABLE session_buckets")
        db.execute(
            "CREATE TABLE session_buckets (operation TEXT NOT NULL, bucket INTEGER NOT NULL,"
            " digests BLOB NOT NULL, PRIMARY KEY (operation, bucket)) WITHOUT ROWID"
        )
        db.executemany("INSERT INTO session_buckets VALUES (?, ?, ?)", rows)
        db.execute("UPDATE meta SET value = 6 WHERE key = 'version'")
        db.commit()

    with caplog.at_level(logging.INFO):
        poller = restart(cfg, clock, path)
    assert "state database upgraded" in caplog.text
    assert poller.snapshot().counts == before.counts
    _polls_on_exactly(poller, clock, traffic)  # no session it knew is counted again
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (7,)
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'session_buckets'")
    assert "PRIMARY KEY" not in sql[0]


def test_a_json_state_file_of_version_2_is_migrated_not_reset(sim_factory, tmp_path, caplog):
    cfg, clock, traffic, poller = _polled(sim_factory, seed=41)
    before = poller.snapshot()
    assert before.counts.sessions_total
    path = tmp_path / "state.json"
    old = _v2_file(poller)
    path.write_bytes(old)

    with caplog.at_level(logging.INFO):
        poller = restart(cfg, clock, path)
    assert "state file migrated to a database" in caplog.text
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
    assert (tmp_path / "state.json.v2.json").read_bytes() == old  # kept for a rollback
    after = poller.snapshot()
    assert after.counts.interactions == before.counts.interactions
    assert after.counts.sessions_total == before.counts.sessions_total
    assert after.counts.transferred_total == before.counts.transferred_total
    assert after.collected_until == before.collected_until
    _polls_on_exactly(poller, clock, traffic)
    # And the next start reads the database as it is.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        restart(cfg, clock, path)
    assert "migrated" not in caplog.text and "state loaded" in caplog.text


def test_a_save_writes_one_operations_rows_and_appends_only_the_sessions_new_since(
    sim_factory, tmp_path, monkeypatch
):
    clock = Clock(START)
    _, url_a = sim_factory(Traffic(seed=3, rate_per_minute=120), clock)
    _, url_b = sim_factory(Traffic(seed=4, rate_per_minute=120), clock)
    path = tmp_path / "state.json"
    store = StateStore(path)
    a = make_poller(make_config(url_a), clock, TokenGate(0), store=store)
    b = other_poller(url_b, clock, store)
    # 35 minutes: the sessions fill four ten-minute buckets, and the next poll's go to the last
    for _ in range(7):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        a.poll_once()
        b.poll_once()
    db = sqlite3.connect(path)

    def rows(operation: str) -> list[tuple[object, ...]]:
        return (
            sorted(
                db.execute(
                    "SELECT bucket, digests FROM session_buckets WHERE operation = ?", (operation,)
                ).fetchall()
            )
            + db.execute("SELECT saved_at FROM operations WHERE name = ?", (operation,)).fetchall()
        )

    other_before, mine_before = rows("other"), rows("main")
    assert len(mine_before) >= 4  # three buckets or more, and the operation's own row
    written: list[Changes | None] = []
    save = store.save

    def spy(name: str, state: OperationState, changes: Changes | None = None) -> bool:
        written.append(changes)
        return save(name, state, changes)

    monkeypatch.setattr(store, "save", spy)
    clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
    a.poll_once()
    # The poll's save carried the one bucket its new sessions went to, not the horizon.
    (changes,) = written
    assert changes is not None and len(changes.buckets) == 1
    (bucket, added), *_ = changes.buckets.items()
    # Nothing of the other operation was written, not even its row's time.
    assert rows("other") == other_before
    # Of this operation's session rows, every one written before is kept as it was: the poll's
    # new sessions are one row more, holding those sessions only, in a bucket that had some.
    mine_after = rows("main")
    assert all(r in mine_after for r in mine_before[:-1])
    assert [r for r in mine_after[:-1] if r not in mine_before] == [(bucket, added)]
    assert any(r[0] == bucket for r in mine_before[:-1]) and unpack(added)
    assert mine_after[-1] != mine_before[-1]  # the operation's own row is rewritten
    db.close()
    # Read back, the bucket holds its sessions of every save.
    back = StateStore(path).load()["main"].tally.session_buckets
    assert sorted(unpack(back[bucket])) == sorted(a.tally.sessions.buckets[bucket])


def test_a_damaged_database_is_moved_aside_and_the_exporter_starts_fresh(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    with caplog.at_level(logging.ERROR):
        assert StateStore(path).load() == {}
    assert not path.exists()
    (aside,) = tmp_path.glob("state.json.corrupt-*")
    assert "state file unusable; starting fresh" in caplog.text and str(aside) in caplog.text
    # ...and saving afterwards creates a new database.
    store = StateStore(path)
    assert store.save("x", OperationState(None, None, {}, TallyState(counts=Counts())))
    assert set(StateStore(path).load()) == {"x"}
