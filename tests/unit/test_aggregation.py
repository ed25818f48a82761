from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from exporter.api.records import DateParser, decode, fingerprint
from exporter.counting import labels
from exporter.counting.tally import Tally
from tests.support.harness import operation_settings

ZONE = ZoneInfo("America/Bogota")


def at(text: str) -> int:
    epoch = DateParser(ZONE)(text)
    assert epoch is not None
    return epoch


BASE = at("2026-03-02 10:00:00")


def row(
    second: int = 0, answer: str = "transfer_skill", channel: str = "whatsapp", **extra: object
) -> dict[str, object]:
    return {
        "session_id": "s1",
        "channel": channel,
        "rp_id": "101",
        "date": f"2026-03-02 10:00:{second:02d}",
        "customer_name": "Ana",
        "customer_email": "a@x.co",
        "customer_phone": "57300",
        "customer_query": "hola",
        "routing_answer": answer,
        "customer_id": "1",
        "conn_id": "0",
        **extra,
    }


def answer(*rows: dict[str, object]):
    return decode(json.dumps({"code": "200", "msg": "", "data": list(rows)}).encode())


def tally(**limits: object) -> Tally:
    return Tally(operation_settings(labels=limits))


def test_identical_rows_in_one_answer_are_distinct_interactions():
    t = tally()
    result = t.ingest(answer(row(1), row(1), row(2)), BASE, BASE + 299)
    assert result.counted == 3
    assert t.counts.interactions == {("whatsapp", "101", "transfer_skill"): 3}


def test_a_re_read_adds_only_copies_beyond_those_already_counted():
    t = tally()
    t.ingest(answer(row(1), row(1)), BASE, BASE + 299)
    again = t.ingest(answer(row(1), row(1), row(1), row(2)), BASE, BASE + 299)
    assert (again.counted, again.duplicates) == (2, 2)
    assert t.counts.interactions[("whatsapp", "101", "transfer_skill")] == 4
    # Fewer copies in a later answer (e.g. a truncated re-read) never subtracts.
    t.ingest(answer(row(1)), BASE, BASE + 299)
    assert t.counts.interactions[("whatsapp", "101", "transfer_skill")] == 4
    assert (t.counts.received, t.counts.duplicates) == (7, 3)


def test_rows_are_remembered_until_the_range_that_returned_them_cannot_be_read_again():
    """The API may select a row by another time than its date (a session's close, say), which
    lies somewhere in the range that returned it: so the row is kept until that range, not its
    own date, leaves the re-read horizon."""
    t = tally()
    t.ingest(answer(row(1), row(50)), BASE + 240, BASE + 299)  # both dated before the range
    t.forget_before(BASE + 299)
    assert len(t.seen) == 2
    again = t.ingest(answer(row(1), row(50)), BASE + 299, BASE + 599)  # the next look-back
    assert (again.counted, again.duplicates) == (0, 2)
    t.forget_before(BASE + 300)
    assert len(t.seen) == 0


def test_a_row_dated_after_its_range_is_kept_until_its_own_date_but_at_most_a_day():
    t = tally()
    t.ingest(answer(row(30)), BASE, BASE + 9)
    t.forget_before(BASE + 30)
    assert len(t.seen) == 1
    t.forget_before(BASE + 31)
    assert len(t.seen) == 0
    far = row(5) | {"date": "2026-03-09 10:00:05"}  # a week ahead
    t.ingest(answer(far), BASE, BASE + 9)
    t.forget_before(BASE + 9 + 86400 + 1)
    assert len(t.seen) == 0


def test_rows_dated_outside_the_range_are_counted_in_the_open_windows_and_reported():
    t = tally()
    early = row(3) | {"date": "2026-03-02 09:41:03"}  # 19 minutes before the range
    late = row(4) | {"date": "2026-03-02 10:07:04"}  # after it
    result = t.ingest(answer(row(1), early, late), BASE, BASE + 299, (BASE, BASE))
    assert (result.counted, result.rejected, result.outside) == (3, 0, 2)
    assert (result.before, result.after) == (BASE - at("2026-03-02 09:41:03"), 424 - 299)
    assert t.counts.outside_range == 2
    assert sum(t.counts.interactions.values()) == 3
    # All three count in the one open window: the earlier one was published already.
    assert t.ledger.by_window == {BASE: {("whatsapp", "101", "transfer_skill"): 3}}
    assert t.counts.newest == at("2026-03-02 10:07:04")
    assert t.counts.late == 1  # the early one: its window was published before it came
    # Read again: duplicates, not counted and not outside a second time.
    again = t.ingest(answer(row(1), early, late), BASE, BASE + 599, (BASE, BASE + 300))
    assert (again.counted, again.duplicates, again.outside) == (0, 3, 0)
    assert t.counts.outside_range == 2


def test_uncountable_rows_are_rejected_by_reason_and_the_rest_counted():
    t = tally()
    bad_date = row(3) | {"date": "02/03/2026 10:00:03"}
    no_day = row(3) | {"date": "2026-02-30 10:00:03"}
    far_future = row(3) | {"date": "9999-12-31 23:59:59"}
    outside = row(3) | {"date": "2026-03-02 11:00:00"}
    rows = (row(1), bad_date, no_day, far_future, outside, row(2) | {"rp_id": None})
    result = t.ingest(answer(*rows), BASE, BASE + 299)
    assert result.counted == 2
    assert t.counts.rejected == {
        "undecodable": 0,
        "missing_field": 0,
        "invalid_type": 1,
        "invalid_date": 3,
    }
    assert t.counts.received == 6


def test_routing_answers_beyond_the_cap_fold_into_other_and_are_counted():
    t = tally(routing_answer={"max_values": 3})
    rows = [row(i, answer=f"reply {chr(65 + i)}") for i in range(10)]
    t.ingest(answer(*rows), BASE, BASE + 299)
    values = {k[2] for k in t.counts.interactions}
    assert values == {"reply A", "reply B", "reply C", labels.OTHER}
    assert t.counts.interactions[("whatsapp", "101", labels.OTHER)] == 7
    assert t.counts.overflow["routing_answer"] == 7


def test_label_values_are_normalised():
    t = tally()
    t.ingest(
        answer(
            row(1, channel="  WhatsApp "),
            row(2, answer="MaskedText: 1020304050"),
            row(3, answer="  Tu   pedido 123456 llega hoy, escribe a ana@example.com "),
            row(4, answer=""),
        ),
        BASE,
        BASE + 299,
    )
    keys = set(t.counts.interactions)
    assert ("whatsapp", "101", "transfer_skill") in keys
    assert ("whatsapp", "101", "MaskedText") in keys
    assert ("whatsapp", "101", "Tu pedido # llega hoy, escribe a <email>") in keys
    assert ("whatsapp", "101", labels.EMPTY) in keys


def test_long_answers_are_cut():
    assert len(labels.routing_answer("x" * 1000, 64)) == 64


def test_last_window_reports_zero_then_drops_quiet_label_sets():
    t = tally(last_window_retention="1h")
    t.ingest(answer(row(1), row(2, answer="hola")), BASE, BASE + 299)
    t.publish(BASE, now=BASE + 360, keep_from=BASE - 600)
    assert t.counts.last_window == {
        ("whatsapp", "101", "transfer_skill"): 1,
        ("whatsapp", "101", "hola"): 1,
    }
    # Next window: only one label set has traffic, the other reports 0 rather than vanishing.
    later = at("2026-03-02 10:05:01")
    t.ingest(answer(row(1) | {"date": "2026-03-02 10:05:01"}), later, later)
    t.publish(BASE + 300, now=BASE + 660, keep_from=BASE - 300)
    assert t.counts.last_window == {
        ("whatsapp", "101", "transfer_skill"): 1,
        ("whatsapp", "101", "hola"): 0,
    }
    # An hour of silence later the quiet one is gone; counters are untouched.
    t.publish(BASE + 3600, now=BASE + 360 + 3601, keep_from=BASE + 3000)
    assert ("whatsapp", "101", "hola") not in t.counts.last_window
    assert t.counts.interactions[("whatsapp", "101", "hola")] == 1
    assert list(t.ledger.by_window) == []


def test_a_bad_row_read_again_is_rejected_once():
    t = tally()
    bad = row(3) | {"date": "yesterday"}
    wrong_type = row(4) | {"channel": ["a", "list"]}
    first = t.ingest(answer(row(1), bad, wrong_type), BASE, BASE + 299)
    again = t.ingest(answer(row(1), bad, wrong_type), BASE, BASE + 299)
    assert (first.rejected, again.rejected, again.duplicates) == (2, 0, 3)
    assert t.counts.rejected["invalid_date"] == 1 and t.counts.rejected["invalid_type"] == 1
    # Once no request can return them again they are forgotten, like counted rows.
    t.forget_before(BASE + 300)
    assert len(t.seen) == 0


def test_normalising_a_huge_answer_is_linear():
    """A 1 MB reply without '@' once made the e-mail pattern backtrack for minutes."""
    huge = "x" * 1_000_000 + " a@b.co"
    assert labels.routing_answer(huge, 64).startswith("xxxx")
    assert labels.routing_answer("  write to a@b.co  ", 64) == "write to <email>"


def test_the_store_is_keyed_by_the_documented_fingerprint():
    """The dedupe store's keys are what the state file saves: records.fingerprint of each row."""
    t = tally()
    parsed = answer(row(1), row(2))
    t.ingest(parsed, BASE, BASE + 299)
    assert set(t.seen.copies) == {fingerprint(raw) for raw in parsed.rows}


def test_label_sets_past_max_series_fold_answer_then_rp_id_and_stay_exact():
    """The per-label caps multiply (50 x 200 x 50); max_series bounds the product."""
    t = tally(max_series=20)
    rows = [
        row(i % 60, answer=f"reply {i}", channel="whatsapp", rp_id=f"rp{i % 30}")
        for i in range(300)
    ]
    t.ingest(answer(*rows), BASE, BASE + 299)
    assert sum(t.counts.interactions.values()) == 300  # exact in total
    channels = {k[0] for k in t.counts.interactions}
    assert len(t.counts.interactions) <= 20 + len(channels)
    folded = [k for k in t.counts.interactions if k[2] == labels.OTHER]
    assert folded and ("whatsapp", labels.OTHER, labels.OTHER) in t.counts.interactions
    assert t.counts.overflow["routing_answer"] > 0 and t.counts.overflow["rp_id"] > 0
    # A label set admitted before the cap keeps counting under its own labels.
    first = ("whatsapp", "rp0", "reply 0")
    before = t.counts.interactions[first]
    t.ingest(
        answer(row(0, answer="reply 0", rp_id="rp0") | {"session_id": "new"}), BASE, BASE + 299
    )
    assert t.counts.interactions[first] == before + 1
