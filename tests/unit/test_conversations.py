"""Conversations: sessions followed to their end and observed once, as the README defines them."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.api import windowing
from exporter.api.client import TokenGate
from exporter.api.records import decode
from exporter.counting.recontacts import Recontacts
from exporter.counting.tally import Tally
from exporter.state.store import StateStore
from exporter.tools.simulator import Traffic
from tests.support.harness import (
    Clock,
    assert_conversations,
    expected_counts,
    make_config,
    make_poller,
    operation_settings,
)
from tests.unit.test_aggregation import BASE, ZONE

KPIS = {"session_timeout": "5m", "recontact_window": "1h"}


def row(second: int, session: str, answer: str, customer: str = "c1", **extra: Any) -> Any:
    return {
        "session_id": session,
        "channel": "whatsapp",
        "rp_id": "101",
        "date": datetime.fromtimestamp(BASE + second, ZONE).strftime("%Y-%m-%d %H:%M:%S"),
        "customer_name": "Ana",
        "customer_phone": "573001112233",
        "customer_email": "ana@example.com",
        "customer_query": "hola",
        "routing_answer": answer,
        "customer_id": customer,
        "conn_id": "0",
        **extra,
    }


def answer(*rows: Any) -> Any:
    return decode(json.dumps({"code": "200", "msg": "", "data": list(rows)}).encode())


def read(t: Tally, first: int, last: int, *rows: Any) -> None:
    """One window read as the poller reads it: counted, then everything before it final."""
    t.ingest(answer(*rows), BASE + first, BASE + last)
    t.forget_before(BASE + last + 1)


def test_results_turns_and_times_are_observed_once_when_the_session_ends():
    t = Tally(operation_settings(kpis=KPIS))
    read(
        t,
        0,
        299,
        row(1, "A", "Hola, ¿qué necesitas?"),
        row(30, "A", "No entendí tu mensaje"),
        row(95, "A", "transfer_skill"),
        row(10, "B", "Selecciona: 1. Saldo 2. Pagos", customer="c2"),
        row(20, "C", "Gracias por contactarnos", customer="c3"),
    )
    # Nothing is observed while a row up to the timeout after each session's last may come.
    assert t.counts.sessions_ended == {}
    assert t.counts.sessions_open == {"whatsapp": 3}
    read(t, 300, 599)
    c = t.counts
    assert c.sessions_ended == {
        ("whatsapp", "transferred"): 1,
        ("whatsapp", "abandoned"): 1,  # B's last word was a question nobody answered
        ("whatsapp", "contained"): 1,
    }
    assert c.sessions_open == {"whatsapp": 0}
    assert c.session_turns == {("whatsapp", 0): 2, ("whatsapp", 2): 1}  # 1, 1 and 3 rows
    assert c.session_turns_sum == {"whatsapp": 5}
    assert c.session_duration_sum == {"whatsapp": 94}
    assert c.session_time_to_transfer == {("whatsapp", 2): 1}  # 94 s: in the 120 s bucket
    assert c.sessions_with_fallback == {"whatsapp": 1}
    read(t, 600, 899)
    assert sum(c.sessions_ended.values()) == 3  # once, whatever follows


def test_a_row_after_the_timeout_ends_the_session_and_counts_apart():
    t = Tally(operation_settings(kpis=KPIS))
    read(t, 0, 299, row(1, "A", "Hola, ¿qué necesitas?"), row(20, "A", "Gracias"))
    # Seven minutes later the customer writes in the same session: not a turn of it.
    read(t, 300, 599, row(440, "A", "Hola, ¿qué necesitas?"))
    read(t, 600, 899, row(601, "A", "late again"))
    c = t.counts
    assert c.sessions_ended == {("whatsapp", "contained"): 1}
    assert c.session_turns_sum == {"whatsapp": 2}
    assert c.session_rows_after_end == {"whatsapp": 2}
    # The rows themselves are interactions like any other.
    assert sum(c.interactions.values()) == 4


def test_a_tie_at_the_last_second_is_abandoned_only_if_every_row_there_waits():
    t = Tally(operation_settings(kpis=KPIS))
    read(
        t,
        0,
        299,
        row(5, "A", "¿Algo más?"),
        row(5, "A", "Tu solicitud fue registrada"),
        row(7, "B", "¿Algo más?", customer="c2"),
        row(7, "B", "No entendí", customer="c2"),
    )
    read(t, 300, 899)
    assert t.counts.sessions_ended == {
        ("whatsapp", "contained"): 1,
        ("whatsapp", "abandoned"): 1,
    }


def test_sessions_end_by_what_was_collected_not_by_the_clock():
    """A session ends when the rows after it are in for good, however long ago it went
    quiet; and a row returned by a range may be selected by any time in it, so its session
    stays open until no re-read can reach that range."""
    t = Tally(operation_settings(kpis=KPIS))
    t.ingest(answer(row(1, "A", "Gracias")), BASE, BASE + 299)
    t.forget_before(BASE + 200)  # final up to 200 s: A's timeout (301 s) has not passed
    assert t.counts.sessions_ended == {}
    t.forget_before(BASE + 302)
    assert t.counts.sessions_ended == {("whatsapp", "contained"): 1}
    # A catch-up reading an hour at once: its rows may be selected by any time of the hour.
    t.ingest(
        answer(row(400, "B", "Gracias", "c2"), row(3400, "C", "Gracias", "c3")),
        BASE + 300,
        BASE + 3599,
    )
    t.forget_before(BASE + 3000)
    assert t.counts.sessions_ended == {("whatsapp", "contained"): 1}
    t.forget_before(BASE + 3600)
    assert t.counts.sessions_ended == {("whatsapp", "contained"): 2}
    assert t.counts.sessions_open == {"whatsapp": 1}  # C: its timeout has not passed


def test_a_session_open_past_the_horizon_ends_as_it_stands():
    t = Tally(operation_settings(kpis={"session_timeout": "50m", "session_horizon": "1h"}))
    read(t, 0, 299, row(1, "A", "¿Seguimos?"))
    read(t, 2400, 2699, row(2401, "A", "¿Seguimos?"))
    read(t, 3300, 3599, row(3301, "A", "¿Seguimos?"))
    assert t.counts.sessions_ended == {}
    # Collected past an hour after its first row: it ends with what it had, though a row
    # within its timeout may still come; such a row counts apart.
    read(t, 3600, 3899)
    assert t.counts.sessions_expired == {"whatsapp": 1}
    read(t, 3900, 4199, row(4000, "A", "¿Seguimos?"))
    read(t, 4200, 7200)
    c = t.counts
    assert c.sessions_expired == {"whatsapp": 1}
    assert c.sessions_ended == {("whatsapp", "abandoned"): 1}
    assert c.session_turns_sum == {"whatsapp": 3}
    assert c.session_rows_after_end == {"whatsapp": 1}


def test_a_recontact_is_labelled_with_the_earlier_sessions_result():
    t = Tally(operation_settings(kpis=KPIS))
    read(t, 0, 299, row(1, "A", "transfer_skill"), row(2, "B", "Gracias", customer=""))
    # Within the hour: the same customer_id; the same phone for the one without an id.
    read(t, 1800, 2099, row(1801, "C", "Gracias"), row(1802, "D", "Gracias", customer=""))
    # After the window: not a re-contact.
    read(t, 7200, 7499, row(7201, "E", "Gracias"))
    read(t, 7500, 7999)
    assert t.counts.sessions_recontact == {
        ("whatsapp", "transferred"): 1,
        ("whatsapp", "contained"): 1,
    }


def test_open_sessions_and_customers_survive_a_restart_as_keyed_digests_only(tmp_path):
    path = tmp_path / "state.db"
    store = StateStore(path)
    t = Tally(operation_settings(kpis=KPIS), store.secret())
    read(t, 0, 299, row(200, "A", "¿Qué necesitas?", customer="98765432"))
    read(t, 300, 599, row(320, "A", "transfer_skill", customer="98765432"))
    store.save("main", _state(t), t.pending())
    t.saved()
    t.forget_before(BASE + 1000)  # ended and customer kept: a second, partial save
    store.save("main", _state(t), t.pending())

    again = StateStore(path)
    back = Tally(operation_settings(kpis=KPIS), again.secret())
    back.restore(again.load()["main"].tally)
    assert back.counts.sessions_ended == {("whatsapp", "transferred"): 1}
    read(back, 1200, 1499, row(1201, "B", "Gracias", customer="98765432"))
    read(back, 1500, 1999)
    assert back.counts.sessions_recontact == {("whatsapp", "transferred"): 1}
    # What is kept of a customer cannot be read back from the database alone.
    key_file = tmp_path / "state.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    raw = path.read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("state.db-")
    )
    for secret in (b"98765432", b"573001112233", b"ana@example.com", key_file.read_bytes()):
        assert secret not in raw


def test_a_restart_compares_with_the_customers_latest_session_and_old_rows_go(tmp_path):
    """A customer's earlier session keeps its row in the database until the floor passes it
    (deleting it at once wrote a page anywhere in the table): a restart reads the latest one,
    and rows older than the re-contact window and a horizon are deleted."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    t = Tally(operation_settings(kpis=KPIS), store.secret())
    for start, session, reply in ((0, "A", "transfer_skill"), (900, "B", "Gracias")):
        read(t, start, start + 299, row(start + 1, session, reply, customer="98765432"))
        read(t, start + 300, start + 599)
        store.save("main", _state(t), t.pending())
        t.saved()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM recontact_customers").fetchone() == (2,)

    again = StateStore(path)
    back = Tally(operation_settings(kpis=KPIS), again.secret())
    back.restore(again.load()["main"].tally)
    read(back, 1800, 2099, row(1801, "C", "Gracias", customer="98765432"))
    read(back, 2100, 2399)
    # A then B (after a transfer), then C (after B, contained): not after A a second time.
    assert back.counts.sessions_recontact == {
        ("whatsapp", "transferred"): 1,
        ("whatsapp", "contained"): 1,
    }
    back.forget_before(BASE + 901 + 3600 + 86400 + 1)  # past B's end, the window and a horizon
    again.save("main", _state(back), back.pending())
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM recontact_customers").fetchone() == (1,)


def _filed(r: Recontacts) -> int:
    return sum(map(len, r._expiring.buckets.values()))


def test_a_customer_who_comes_back_all_day_is_remembered_once():
    """Re-contact memory follows customers, not sessions: a regular who writes every ten
    minutes for two days is one entry (it was one per session of the window and a horizon:
    162 MB against 114 MB after two days of a million sessions a day), remembered until the
    window and a horizon after their latest session, then forgotten."""
    window, horizon = 3600, 86400
    r = Recontacts(window, horizon)
    for n in range(288):
        first = BASE + n * 600
        previous = r.ended(7, first, first + 60, n % 3)
        assert previous == (None if n == 0 else (n - 1) % 3)
        r.forget_before(first + 300)
    assert len(r) == 1 and _filed(r) == 1
    last = BASE + 287 * 600 + 60
    r.forget_before(last + window + horizon - 600)
    assert len(r) == 1
    r.forget_before(last + window + horizon + 1200)
    assert len(r) == 0 and _filed(r) == 0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),  # customer
            st.integers(0, 30_000),  # seconds before the session ends, after the one before
            st.integers(0, 2_000),  # its duration
            st.integers(0, 2),  # result
        ),
        max_size=60,
    )
)
def test_customers_are_held_while_their_window_runs_and_filed_once(
    sessions: list[tuple[int, int, int, int]],
) -> None:
    window, horizon = 3600, 7200
    r = Recontacts(window, horizon)
    latest: dict[int, tuple[int, int]] = {}  # customer -> (last, result), as a reader expects
    now = BASE
    for who, gap, duration, result in sessions:
        now += gap
        first, last = now - duration, now
        earlier = latest.get(who)
        expected = None
        if earlier is not None and earlier[0] <= first and first - earlier[0] <= window:
            expected = earlier[1]
        assert r.ended(who, first, last, result) == expected
        if earlier is None or earlier[0] <= last:
            latest[who] = (last, result)
        r.forget_before(now + 1)
        floor = now + 1 - window - horizon
        for customer, (end, _) in latest.items():
            # Held while the window and a horizon run; gone a bucket after.
            if end >= floor:
                assert customer in r.customers
            elif end < floor - 600:
                assert customer not in r.customers
        latest = {c: v for c, v in latest.items() if c in r.customers}
        assert _filed(r) == len(r)


def _state(t: Tally) -> Any:
    from exporter.state.store import OperationState

    return OperationState(cursor=None, origin=None, requests={}, tally=t.export(sessions=False))


def test_a_key_file_readable_by_others_is_made_private(tmp_path, caplog):
    key = tmp_path / "state.db.key"
    key.write_text("ab" * 32 + "\n")
    os.chmod(key, 0o644)
    assert StateStore(tmp_path / "state.db").secret() == bytes.fromhex("ab" * 32)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "made private" in caplog.text and "ab" * 32 not in caplog.text


@pytest.mark.parametrize("select_by", ["date", "close"])
def test_every_conversation_figure_matches_the_ground_truth_across_a_restart(
    sim_factory, tmp_path, select_by
):
    """Late rows, duplicates, re-reads and (by close time) whole sessions arriving after they
    closed; a restart mid-conversation; every figure equals the simulator's ground truth."""
    start = 1_790_000_100
    traffic = Traffic(
        seed=31,
        rate_per_minute=60,
        daily_curve=False,
        duplicate_fraction=0.02,
        late_max=120,
        start=start,
        stop=start + 3 * 3600,
        select_by=select_by,
    )
    clock = Clock(start)
    _, url = sim_factory(traffic, clock)
    cfg = make_config(url, kpis=dict(KPIS), state={"path": str(tmp_path / "state.db")})
    store = StateStore(tmp_path / "state.db")
    poller = make_poller(cfg, clock, TokenGate(0), store=store)
    end = traffic.quiet_after + 3600
    while clock.now < end:
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
        if abs(clock.now - (start + 5400)) < 150:  # mid-traffic: a restart from the state
            again = StateStore(tmp_path / "state.db")
            poller = make_poller(cfg, clock, TokenGate(0), store=again, saved=again.load()["main"])
    rows = traffic.all_rows()
    counts = poller.snapshot().counts
    assert counts.interactions == dict(expected_counts(rows))
    truth = assert_conversations(counts, rows, 300, 3600)
    assert truth.session_rows_after_end


def test_without_a_state_file_nothing_piles_up_for_saves(sim_factory):
    """Changes are noted for the next save; with no state file they are dropped at each
    commit, or a long run would hold every session it ever saw."""
    clock = Clock(1_790_000_100)
    _, url = sim_factory(Traffic(seed=4, rate_per_minute=120, daily_curve=False), clock)
    poller = make_poller(make_config(url, kpis=dict(KPIS)), clock)
    for _ in range(6):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
    assert poller.tally.counts.sessions_ended
    changes = poller.tally.pending()
    assert not changes.buckets and not changes.transfers
    talk = changes.conversations
    assert not talk.sessions and not talk.gone and not talk.customers


_ANSWERS = ("Hola, ¿qué necesitas?", "No entendí tu mensaje", "transfer_skill", "Listo, gracias")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("ABCDEF"),
            st.integers(0, 900),
            st.sampled_from(_ANSWERS),
            st.sampled_from(("c1", "c2", "")),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(1, 40), max_size=6),
)
def test_the_same_rows_in_one_answer_or_in_pieces_give_the_same_figures(rows, cuts):
    """A range split into several answers (a cap split, a retry that comes back in parts)
    follows its conversations as one answer does: a session with several rows in an answer
    and one with a row per answer go different ways through the code, to the same figures."""
    records = sorted(
        (
            row(s, sid, a, customer=who, customer_query=f"q{i}")
            for i, (sid, s, a, who) in enumerate(rows)
        ),
        key=lambda r: r["date"],
    )

    def figures(pieces: list[list[Any]]) -> dict[str, Any]:
        t = Tally(operation_settings(kpis=KPIS))
        for piece in pieces:
            t.ingest(answer(*piece), BASE, BASE + 1799)
            # The gauge is the sessions held open, at every step.
            assert sum(t.counts.sessions_open.values()) == len(t.conversations)
        t.forget_before(BASE + 1800)
        read(t, 1800, 3599)
        c = t.counts
        assert sum(c.interactions.values()) == len(records)
        return {
            "ended": c.sessions_ended,
            "open": c.sessions_open,
            "turns": (c.session_turns, c.session_turns_sum),
            "duration": (c.session_duration, c.session_duration_sum),
            "transfer": (c.session_time_to_transfer, c.session_time_to_transfer_sum),
            "fallback": c.sessions_with_fallback,
            "after_end": c.session_rows_after_end,
            "recontact": c.sessions_recontact,
        }

    bounds = sorted({0, *(c for c in cuts if c < len(records)), len(records)})
    pieces = [records[a:b] for a, b in pairwise(bounds)]
    singles = [[r] for r in records]
    whole = figures([records])
    assert sum(whole["ended"].values()) == len({sid for sid, *_ in rows})
    assert figures(pieces) == whole
    assert figures(singles) == whole
