from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest

from exporter.records import DateParser, InvalidAnswer, decode, fingerprint, format_wall

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
    assert len(answer.records) == 1


def test_msg_with_leading_space_is_trimmed():
    assert decode(body(msg=" 1 records were found", data=[ROW])).msg == "1 records were found"


@pytest.mark.parametrize(("data", "n"), [([ROW, ROW], 2), (ROW, 1), (None, 0), ([], 0)])
def test_data_as_list_single_object_or_null(data, n):
    assert len(decode(body(data=data)).records) == n


def test_missing_data_key_is_zero_rows():
    assert decode(b'{"code": "200", "msg": "ok"}').records == []


@pytest.mark.parametrize(
    "raw", [b"", b"<html>502</html>", b'{"code": 200, "data": [', b"[1, 2]", b'{"data": 5}']
)
def test_not_an_envelope_is_invalid_without_quoting_the_body(raw):
    with pytest.raises(InvalidAnswer) as info:
        decode(raw)
    assert "html" not in str(info.value)


def test_bad_records_are_rejected_with_a_reason_and_the_rest_kept():
    missing = {k: v for k, v in ROW.items() if k != "date"}
    wrong = {**ROW, "channel": 7}
    answer = decode(body(data=[ROW, missing, wrong, "not an object", ROW]))
    assert len(answer.records) == 2
    assert sorted(reason for reason, _ in answer.bad) == [
        "invalid_type",
        "invalid_type",
        "missing_field",
    ]


def test_numeric_ids_are_accepted():
    answer = decode(
        body(data=[{**ROW, "rp_id": 101, "session_id": 5, "customer_phone": 573001112233}])
    )
    assert answer.records[0].rp_id == 101


def test_hostile_strings_decode_intact():
    nasty = 'a"b\\c\nd\x00e 😀 ' + "x" * 100_000
    answer = decode(body(data=[{**ROW, "routing_answer": nasty, "customer_query": nasty}]))
    assert answer.records[0].routing_answer == nasty


def test_fingerprint_covers_the_whole_row():
    a = decode(body(data=[ROW])).records[0]
    same = decode(body(data=[dict(reversed(list(ROW.items())))])).records[0]
    other_query = decode(body(data=[{**ROW, "customer_query": "adios"}])).records[0]
    other_conn = decode(body(data=[{**ROW, "conn_id": "1"}])).records[0]
    assert fingerprint(a) == fingerprint(same)
    assert len({fingerprint(a), fingerprint(other_query), fingerprint(other_conn)}) == 3


def test_dates_are_wall_time_of_the_operation_zone():
    bogota = DateParser(ZoneInfo("America/Bogota"))
    santiago = DateParser(ZoneInfo("America/Santiago"))
    # 19:34:31 in Bogota (UTC-5) is 00:34:31 UTC the next day.
    assert bogota("2026-01-18 19:34:31") == 1768782871
    # Santiago is on summer time (UTC-3) in January.
    assert santiago("2026-01-18 19:34:31") == 1768782871 - 2 * 3600


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
    ],
)
def test_dates_are_parsed_strictly(text):
    assert DateParser(ZoneInfo("America/Bogota"))(text) is None


def test_request_dates_use_the_api_format_in_the_operation_zone():
    assert format_wall(1768782871, ZoneInfo("America/Bogota")) == "20260118193431"
    assert format_wall(1768782871, ZoneInfo("America/Mexico_City")) == "20260118183431"
