"""Contact-center KPIs: sessions, transfers, routing outcomes and distinct customers."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from exporter.counting.counts import TallyState
from exporter.counting.tally import Tally
from exporter.exposition.collector import WolkvoxCollector
from exporter.settings import config
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, make_config, make_poller, operation_settings
from tests.unit.test_aggregation import BASE, answer, row


def kpi_tally(**kpis: Any) -> Tally:
    return Tally(operation_settings(kpis=kpis))


def rows(*specs: dict[str, Any]) -> Any:
    return answer(*(row(**spec) for spec in specs))


def test_default_outcomes_classify_answers_as_wolkvox_writes_them():
    t = kpi_tally()
    t.ingest(
        rows(
            {"second": 1, "answer": "transfer_skill"},
            {"second": 2, "answer": "Te transferimos al skill Ventas"},
            {"second": 3, "answer": "MaskedText: 1234567"},
            {"second": 4, "answer": ""},
            {"second": 5, "answer": "Hola, ¿en qué te ayudo?"},
            {"second": 6, "answer": None},
            {"second": 7, "answer": "Transferencia bancaria: escribe 1"},  # not a hand-off
            {"second": 8, "answer": "Lo siento, no entendí. ¿Puedes repetirlo?"},
            {"second": 9, "answer": "Desculpe, não entendi"},
            {"second": 10, "answer": "Sorry, I didn't get that."},
            {"second": 11, "answer": "Elige una opción: 1. Saldo 2. Pagos"},
            {"second": 12, "answer": "¿Algo más? 🙂"},
        ),
        BASE,
        BASE + 299,
    )
    # A fallback that asks again is a fallback (the rule before wins); a question ends in a
    # question mark or offers numbered options.
    assert t.counts.outcomes == {
        ("whatsapp", "transferred"): 2,
        ("whatsapp", "masked_input"): 1,
        ("whatsapp", "none"): 2,
        ("whatsapp", "fallback"): 3,
        ("whatsapp", "question"): 3,
        ("whatsapp", "bot_answer"): 1,
    }


def test_outcome_rules_come_from_the_config_first_match_wins():
    t = kpi_tally(
        outcomes=[
            {"outcome": "agent", "match": "^transfer_skill$"},
            {"outcome": "survey", "match": "(?i)encuesta"},
        ],
        default_outcome="bot",
    )
    t.ingest(
        rows(
            {"second": 1, "answer": "transfer_skill"},
            {"second": 2, "answer": "Encuesta: califica 1-5"},
            {"second": 3, "answer": "skill ventas"},
        ),
        BASE,
        BASE + 299,
    )
    assert t.counts.outcomes == {
        ("whatsapp", "agent"): 1,
        ("whatsapp", "survey"): 1,
        ("whatsapp", "bot"): 1,
    }
    assert t.outcome_names == ["agent", "survey", "bot"]
    # Without an outcome named `transferred`, no session counts as transferred.
    assert t.counts.transferred_total == {}


def test_bad_outcome_rules_are_config_errors_with_their_location():
    with pytest.raises(config.ConfigError) as err:
        config.from_mapping(
            {
                "operations": [{"name": "a", "server": "1", "token": "t"}],
                "kpis": {
                    "outcomes": [{"outcome": "Bad Name", "match": "("}],
                    "session_horizon": "10m",
                },
            }
        )
    text = str(err.value)
    assert "kpis.outcomes.0.outcome: 'Bad Name' is not an outcome name" in text
    assert "kpis.outcomes.0.match: not a valid regular expression" in text
    assert "kpis.session_horizon: must be at least 1h" in text


def test_a_session_counts_once_and_transfers_once_across_polls():
    t = kpi_tally()
    t.ingest(
        rows(
            {"second": 1, "answer": "Hola", "session_id": "A"},
            {"second": 2, "answer": "Hola", "session_id": "B", "channel": "web"},
            {"second": 3, "answer": "Hola", "session_id": ""},  # no session: interactions only
        ),
        BASE,
        BASE + 299,
    )
    assert t.counts.sessions_total == {"whatsapp": 1, "web": 1}
    assert t.counts.transferred_total == {}
    # Later polls: more of A, A's first transfer, then a second transfer of A; a re-read of
    # everything; a new session C whose first record is already a transfer.
    t.ingest(
        rows(
            {"second": 1, "answer": "Hola", "session_id": "A"},
            {"second": 10, "answer": "1", "session_id": "A"},
            {"second": 11, "answer": "transfer_skill", "session_id": "A"},
        ),
        BASE,
        BASE + 299,
    )
    t.ingest(
        rows(
            {"second": 11, "answer": "transfer_skill", "session_id": "A"},
            {"second": 20, "answer": "skill: cobranza", "session_id": "A"},
            {"second": 21, "answer": "transfer_skill", "session_id": 7},
        ),
        BASE,
        BASE + 299,
    )
    assert t.counts.sessions_total == {"whatsapp": 2, "web": 1}
    assert t.counts.transferred_total == {"whatsapp": 2}
    assert sum(t.counts.interactions.values()) == 7


def test_sessions_survive_a_restart_as_digests_and_are_forgotten_after_the_horizon():
    t = kpi_tally(session_horizon="2h")
    t.ingest(rows({"second": 1, "session_id": "secret-session-42"}), BASE, BASE + 299)
    state = t.export()
    assert b"secret-session-42" not in msgspec.msgpack.encode(state)
    back = kpi_tally(session_horizon="2h")
    back.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=TallyState))
    later = BASE + 300
    back.ingest(
        answer(row(0, session_id="secret-session-42") | {"date": "2026-03-02 10:05:00"}),
        later,
        later + 299,
    )
    assert back.counts.sessions_total == {"whatsapp": 1}  # the same session, not a new one
    back.forget_before(BASE + 2 * 3600 + 1200)
    assert len(back.sessions) == 0
    assert back.counts.transferred_total == {"whatsapp": 1}  # counters stay; only the memory goes


def test_distinct_customers_per_window_by_id_else_phone_else_email():
    t = kpi_tally()
    t.ingest(
        rows(
            {"second": 1, "customer_id": "9", "session_id": "a"},
            {"second": 2, "customer_id": "9", "session_id": "b"},  # same customer, new session
            {"second": 3, "customer_id": "", "customer_phone": "573001", "session_id": "c"},
            {"second": 4, "customer_id": "", "customer_phone": "", "customer_email": "x@y.co"},
            {"second": 5, "customer_id": "", "customer_phone": "", "customer_email": ""},
            {"second": 6, "customer_id": ["odd"], "channel": "web"},  # odd JSON still counts
            {"second": 7, "customer_id": "9", "channel": "WhatsApp"},  # the same label
        ),
        BASE,
        BASE + 299,
    )
    t.publish(BASE, 0.0, BASE - 600)
    assert t.counts.customers_last_window == {"whatsapp": 3, "web": 1}
    # The next window is quiet for web: it reports 0 rather than vanishing.
    t.ingest(rows({"second": 1, "customer_id": "9"}), BASE, BASE + 299)
    t.publish(BASE + 300, 1.0, BASE)
    assert t.counts.customers_last_window == {"whatsapp": 0, "web": 0}


def test_kpi_series_are_exposed_with_every_outcome_at_zero(sim_factory):

    clock = Clock(1_790_000_100)
    _, url = sim_factory(Traffic(seed=2, rate_per_minute=30), clock)
    poller = make_poller(make_config(url), clock)
    poller.tally.ingest(rows({"second": 1, "answer": "transfer_skill"}), BASE, BASE + 299)
    poller.commit()
    families = {m.name: m for m in WolkvoxCollector([poller], 300).collect()}
    outcomes = {s.labels["outcome"]: s.value for s in families["wolkvox_routing_outcomes"].samples}
    assert outcomes == {
        "transferred": 1,
        "masked_input": 0,
        "none": 0,
        "fallback": 0,
        "question": 0,
        "bot_answer": 0,
    }
    assert [s.value for s in families["wolkvox_sessions"].samples] == [1]
    assert [s.value for s in families["wolkvox_sessions_transferred"].samples] == [1]


def test_an_odd_session_id_does_not_turn_missing_ones_into_a_session():
    t = kpi_tally()
    t.ingest(
        rows(
            {"second": 1, "session_id": ["odd", 1]},
            {"second": 2, "session_id": None},
            {"second": 3, "session_id": ""},
            {"second": 4, "session_id": "A"},
        ),
        BASE,
        BASE + 299,
    )
    assert t.counts.sessions_total == {"whatsapp": 2}  # the odd one (by its text) and A
    assert sum(t.counts.interactions.values()) == 4
