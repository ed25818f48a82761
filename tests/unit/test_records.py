from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from exporter.api.records import (
    DateParser,
    InvalidAnswer,
    Record,
    decode,
    decode_row,
    decode_rows,
    fingerprint,
    format_wall,
)

ROW = {
    "session_id": "123",
    "channel": "whatsapp",
    "rp_id": "101",
    "date": "2026-01-18 19:34:31",
    "customer_name": "Ana",
    "customer_email": "ana@example.com",
    "customer_phone": "573001112233",
    "customer_query": "hola",
    "routing_answer": "transfer_skill",
    "customer_id": "99",
    "conn_id": "0",
}


def body(**envelope: object) -> bytes:
    return json.dumps(
        {"code": 200, "error": None, "msg": "1 records were found", **envelope}
    ).encode()


@pytest.mark.parametrize("code", [200, "200", " 200"])
def test_code_as_number_or_string(code):
    answer = decode(body(code=code, data=[ROW]))
    assert answer.code == 200
    assert len(answer.rows) == 1


def test_msg_with_leading_space_is_trimmed():
    assert decode(body(msg=" 1 records were found", data=[ROW])).msg == "1 records were found"


@pytest.mark.parametrize(("data", "n"), [([ROW, ROW], 2), (ROW, 1), (None, 0), ([], 0)])
def test_data_as_list_single_object_or_null(data, n):
    assert len(decode(body(data=data)).rows) == n


def test_missing_data_key_is_zero_rows():
    assert decode(b'{"code": "200", "msg": "ok"}').rows == []


@pytest.mark.parametrize(
    "raw", [b"", b"<html>502</html>", b'{"code": 200, "data": [', b"[1, 2]", b'{"data": 5}']
)
def test_not_an_envelope_is_invalid_without_quoting_the_body(raw):
    with pytest.raises(InvalidAnswer) as info:
        decode(raw)
    assert "html" not in str(info.value)


def test_bad_records_are_named_and_the_rest_decoded():
    missing = {k: v for k, v in ROW.items() if k != "date"}
    wrong = {**ROW, "channel": 7}
    answer = decode(body(data=[ROW, missing, wrong, "not an object", ROW]))
    decoded = decode_rows(answer.rows)
    assert [r if isinstance(r, str) else "ok" for r in decoded] == [
        "ok",
        "missing_field",
        "invalid_type",
        "invalid_type",
        "ok",
    ]
    assert [r if isinstance(r, str) else "ok" for r in answer.decode_all()] == [
        r if isinstance(r, str) else "ok" for r in decoded
    ]


def test_customer_fields_are_not_decoded_so_their_types_do_not_matter():
    rows = decode(
        body(data=[{**ROW, "customer_name": {"nested": [1]}, "customer_phone": 573001112233}])
    ).rows
    assert isinstance(decode_row(rows[0]), Record)


def test_customer_is_the_id_else_the_phone_else_the_email_on_every_decode_path():
    rows = [
        ROW,
        {**ROW, "customer_id": ""},
        {**ROW, "customer_id": None, "customer_phone": ""},
        {**ROW, "customer_id": 0, "customer_phone": None, "customer_email": ""},
        {k: v for k, v in ROW.items() if k != "customer_id"},
    ]
    want = ["99", "573001112233", "ana@example.com", "", "573001112233"]
    answer = decode(body(data=rows))
    for decoded in (answer.decode_all(), decode_rows(answer.rows)):
        assert [r.customer for r in decoded if isinstance(r, Record)] == want
    singles = [decode_row(raw) for raw in answer.rows]
    assert [r.customer for r in singles if isinstance(r, Record)] == want
    # One malformed row sends decode_rows down its row-by-row path; the others still fall back.
    answer = decode(body(data=[*rows, {**ROW, "channel": 7}]))
    assert [r.customer for r in decode_rows(answer.rows) if isinstance(r, Record)] == want


def test_numeric_ids_are_accepted():
    row = decode_row(decode(body(data=[{**ROW, "rp_id": 101, "session_id": 5}])).rows[0])
    assert isinstance(row, Record) and row.rp_id == 101


def test_hostile_strings_decode_intact():
    nasty = 'a"b\\c\nd\x00e 😀 ' + "x" * 100_000
    row = decode_row(
        decode(body(data=[{**ROW, "routing_answer": nasty, "customer_query": nasty}])).rows[0]
    )
    assert isinstance(row, Record) and row.routing_answer == nasty


def test_fingerprint_covers_the_whole_row_as_served():
    rows = decode(
        body(data=[ROW, dict(ROW), {**ROW, "customer_query": "adios"}, {**ROW, "conn_id": "1"}])
    ).rows
    assert fingerprint(rows[0]) == fingerprint(rows[1])
    assert len({fingerprint(r) for r in rows}) == 3


def test_fingerprints_are_stable_across_releases():
    """State files store these digests: a change of algorithm must come with a new state version,
    or the first poll after an upgrade would count the whole look-back span again."""
    assert fingerprint(msgspec.Raw(b'{"session_id":"1"}')).hex() == (
        "485e94b8c3d97078410a979be863e082"
    )
    assert len(fingerprint(msgspec.Raw(b"{}"))) == 16


def test_many_dates_at_once_agree_with_one_at_a_time_bad_ones_included():
    zone = ZoneInfo("America/Bogota")
    texts = ["2026-03-02 10:00:00", "2026-03-02 25:00:00", "ayer", "2026-03-02 10:00:00"]
    one = DateParser(zone)
    expected = [one(t) for t in texts]
    assert expected[1] is None and expected[2] is None and expected[0] == expected[3]
    many = DateParser(zone, max_cached=1)
    assert many.many(texts) == expected
    assert many.many(texts) == expected  # again, from the cache (past its bound: cleared)
    start = expected[0]
    assert start is not None
    assert many.many(["2026-03-02 10:00:01"]) == [start + 1]


def test_dates_are_wall_time_of_the_operation_zone():
    bogota = DateParser(ZoneInfo("America/Bogota"))
    santiago = DateParser(ZoneInfo("America/Santiago"))
    # 19:34:31 in Bogota (UTC-5) is 00:34:31 UTC the next day.
    assert bogota("2026-01-18 19:34:31") == 1768782871
    # Santiago is on summer time (UTC-3) in January.
    assert santiago("2026-01-18 19:34:31") == 1768782871 - 2 * 3600


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/Santiago", date(2026, 4, 4)),  # clocks back at midnight
        ("America/Santiago", date(2026, 9, 5)),  # forward at midnight: 00:xx does not exist
        ("Europe/Madrid", date(2026, 10, 25)),  # 02:00-03:00 twice
        ("Australia/Lord_Howe", date(2026, 4, 5)),  # half an hour back
        ("America/Bogota", date(2026, 3, 8)),  # no DST at all
    ],
)
def test_every_second_around_an_offset_change_agrees_with_datetime(zone, day):
    tz = ZoneInfo(zone)
    parser = DateParser(tz, max_cached=1_000)  # caches cleared several times on the way
    texts, expected = [], []
    for offset in range(0, 3 * 86_400, 7):
        wall = datetime(day.year, day.month, day.day) + timedelta(seconds=offset)
        texts.append(wall.strftime("%Y-%m-%d %H:%M:%S"))
        expected.append(int(wall.replace(tzinfo=tz).timestamp()))
    assert parser.many(texts) == expected
    assert [parser(t) for t in texts[::50]] == expected[::50]


def test_a_stream_of_invalid_dates_does_not_grow_the_caches():
    parser = DateParser(ZoneInfo("America/Bogota"), max_cached=100)
    bad = [f"2026-02-30 {h:02d}:{m:02d}:00" for h in range(24) for m in range(60)]
    assert parser.many(bad) == [None] * len(bad)
    assert len(parser._minutes) <= 100 and len(parser._days) <= 100


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-18T19:34:31",
        "2026-1-18 19:34:31",
        "2026-02-30 10:00:00",
        "2026-01-18 24:00:00",
        "",
        "٢٠٢٦-01-18 19:34:31",
        "2026-01-18 19:34:31.5",
        "2026-01-18 19:34:60",
        "2026-01-18 19:60:00",
        "2026-01-18 19:34: 1",
        "2026-01-18 19:34:31 ",
    ],
)
def test_dates_are_parsed_strictly(text):
    assert DateParser(ZoneInfo("America/Bogota"))(text) is None


def test_request_dates_use_the_api_format_in_the_operation_zone():
    assert format_wall(1768782871, ZoneInfo("America/Bogota")) == "20260118193431"
    assert format_wall(1768782871, ZoneInfo("America/Mexico_City")) == "20260118183431"
