"""Conversations at a busy operation's scale: a day of 1,000,000 sessions and 300,000 customers.

Measured (issue 21), each size in a fresh process so that they do not share a heap:
- memory: the RSS an open session and a re-contact customer take, packed as the exporter keeps
  them (one `bytes` per session, one int per customer, plus their dict entries and wheels);
- save per poll with 1M open sessions in the state database: one poll's change of a busy
  operation (3,500 sessions started, 3,500 of any age extended, 3,500 ended and their
  customers, seven in ten of them returning within the re-contact window), written as the live
  exporter writes it, and the same while the sessions' journal is written anew; target under
  50 ms;
- load at start: reading 1M open sessions and 300k customers back and restoring them, and the
  first save after it when the journal is due to be written anew (written whole then).

    python -m benchmarks.conversations [--sessions 1000000] [--customers 300000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import T0, machine, rss_kib
from exporter.counting import journal
from exporter.counting.conversations import Open
from exporter.counting.counts import TallyState
from exporter.counting.tally import Tally
from exporter.state.store import OperationState, StateStore
from tests.support.harness import operation_settings

PER_POLL = 3_500  # a day of 1M sessions is about 3,500 per 5-minute poll
POLLS = 5
REWRITING = 8  # polls measured while the journal is written anew


def customer(j: int) -> int:
    """The keyed digest of customer j of the re-contact window."""
    return (j * 7919) % 2**63 + 1


def session(i: int, per_second: float, customers: int) -> tuple[int, bytes]:
    """Session i, open: its digest and packed state, a few turns in, with a customer. Sessions
    start `per_second` a second from T0 on, in order of i. Seven in ten are of a customer of
    the re-contact window (a day of 1M sessions from 300,000 customers is three or more each),
    whom their end moves in the database; the others, of a customer not seen before."""
    first = T0 + int(i / per_second)
    if customers and i % 10 < 7:  # the k-th returning session; 40507 is prime to the count
        who = customer((i // 10 * 7 + i % 10) * 40507 % customers)
    else:
        who = i * 40503 + 2**62
    state = Open(first, first + 90, first + 300, -1, 4, 2, i % 9, who)
    return (i * 2654435761) % 2**64 or 1, state.pack()


def fill(tally: Tally, sessions: int, customers: int) -> None:
    """A day of open sessions, and the customers whose sessions ended in the day before T0."""
    talk = tally.conversations
    for label in ("whatsapp", "web", "facebook_page", "instagram", "email", "sms", "a", "b", "c"):
        talk.channel_index(label)
    saved = TallyState(
        counts=tally.counts,
        open_sessions=dict(session(i, sessions / 86400, customers) for i in range(sessions)),
        recontact_customers={
            customer(j): (T0 - 1 - j * 86400 // customers) << 2 | j % 3 for j in range(customers)
        },
    )
    talk.load(saved)


def memory(sessions: int, customers: int) -> dict[str, Any]:
    tally = Tally(operation_settings(), b"k" * 32)
    before = rss_kib("VmRSS")
    fill(tally, sessions, 0)
    after_sessions = rss_kib("VmRSS")
    fill(tally, 0, customers)
    after = rss_kib("VmRSS")
    return {
        "per_session": (after_sessions - before) * 1024 / sessions,
        "per_customer": (after - after_sessions) * 1024 / max(1, customers),
        "total_mb": (after - before) / 1024,
    }


def saves(sessions: int, customers: int, directory: Path) -> dict[str, Any]:
    tally = Tally(operation_settings(), b"k" * 32)
    fill(tally, sessions, customers)
    store = StateStore(directory / "state.db")
    state = OperationState(cursor=T0, origin=T0, requests={}, tally=tally.export())
    started = time.perf_counter()
    store.save("a", state)
    first = time.perf_counter() - started
    talk = tally.conversations
    times: list[float] = []
    rewriting: list[float] = []
    # A day of open sessions (the stress case: a horizon's worth left open); each poll starts
    # the next five minutes' sessions, extends as many spread over all those open (a live
    # poll's next messages belong to sessions of any age) and ends the oldest. The last polls
    # run while the journal is written anew (`journal`: a slice of the open sessions a save).
    per_second = sessions / 86400
    for poll in range(POLLS + REWRITING):
        if poll == POLLS:
            talk._journal.entries = 10 * sessions + journal.FLOOR  # due to be written anew
        talk.saved()
        for i in range(sessions + poll * PER_POLL, sessions + (poll + 1) * PER_POLL):
            key, blob = session(i, per_second, customers)  # started now, filed where it may end
            talk._store(key, Open.unpack(blob))
        spread = (sessions - PER_POLL) // PER_POLL
        for j in range(PER_POLL):  # extended: any of those open that do not end now
            talk._changes.sessions[
                session((poll + 1) * PER_POLL + j * spread, per_second, customers)[0]
            ] = b""
        for i in range(poll * PER_POLL, (poll + 1) * PER_POLL):  # ended, customers kept
            key = session(i, per_second, customers)[0]
            talk._end(key, Open.unpack(talk.open[key]), expired=False)
        small = OperationState(cursor=T0, origin=T0, requests={}, tally=tally.export(False))
        started = time.perf_counter()
        assert store.save("a", small, tally.pending())
        (times if poll < POLLS else rewriting).append(time.perf_counter() - started)
    tally.saved()
    started = time.perf_counter()
    loaded = StateStore(directory / "state.db").load()["a"]
    back = Tally(operation_settings(), b"k" * 32)
    back.restore(loaded.tally)
    load = time.perf_counter() - started
    assert len(back.conversations) == len(talk), (len(back.conversations), len(talk))
    # Restarted with the journal due to be written anew: the first save writes it whole.
    back.conversations._journal.entries = 10 * sessions + journal.FLOOR
    small = OperationState(cursor=T0, origin=T0, requests={}, tally=back.export(False))
    started = time.perf_counter()
    assert StateStore(directory / "state.db").save("a", small, back.pending())
    restarted = time.perf_counter() - started
    return {
        "full_save_s": first,
        "poll_save_ms": [t * 1000 for t in times],
        "rewriting_ms": [t * 1000 for t in rewriting],
        "load_s": load,
        "restarted_save_s": restarted,
        "db_mb": (directory / "state.db").stat().st_size / 1e6,
        "open": len(talk),
        "customers": len(talk.recontacts),
    }


def child(kind: str, sessions: int, customers: int) -> dict[str, Any]:
    if kind == "memory":
        return memory(sessions, customers)
    with tempfile.TemporaryDirectory() as d:
        return saves(sessions, customers, Path(d))


def measure(kind: str, sessions: int, customers: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.conversations", "--child", kind),
            *("--sessions", str(sessions), "--customers", str(customers)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.sessions, args.customers)))
        return
    mem = measure("memory", args.sessions, args.customers)
    save = measure("save", args.sessions, args.customers)
    print(f"machine: {machine()}")
    print(f"{args.sessions} open sessions, {args.customers} re-contact customers")
    print(
        f"memory: {mem['per_session']:.0f} bytes per open session, "
        f"{mem['per_customer']:.0f} per customer, {mem['total_mb']:.0f} MB in all"
    )
    polls = ", ".join(f"{t:.1f}" for t in save["poll_save_ms"])
    print(f"save per poll ({PER_POLL} started, extended and ended): {polls} ms  target < 50 ms")
    again = ", ".join(f"{t:.1f}" for t in save["rewriting_ms"])
    print(f"the same while the journal is written anew (a slice each): {again} ms")
    print(
        f"first full save: {save['full_save_s']:.2f} s; load at start: {save['load_s']:.2f} s; "
        f"first save after it, the journal due to be written anew: "
        f"{save['restarted_save_s']:.2f} s"
    )
    print(
        f"database: {save['db_mb']:.0f} MB for {save['open']} open, {save['customers']} customers"
    )


if __name__ == "__main__":
    main()
