"""One bad row is one rejected row: whatever is wrong with a row, the rest of its answer counts.

Property tests mutate real simulator answers: hostile rows spliced in (rejected alone, the good
rows counted exactly once, on a re-read too), and bytes flipped or cut anywhere (the answer is
either refused as a whole or used, and nothing escapes).
"""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.api.records import InvalidAnswer, decode
from exporter.counting.tally import Tally
from exporter.tools.simulator import Traffic
from tests.support.harness import operation_settings

ZONE = ZoneInfo("America/Bogota")
FIRST = 1_790_000_040
ROWS = [r.record for r in Traffic(seed=3, rate_per_minute=40).rows(FIRST, FIRST + 119)]

# Each breaks its row in one of the ways the exporter met (and a few more); none breaks the
# envelope around it.
HOSTILE = [
    b'{"session_id": ' + b"[" * 100_000 + b"]" * 100_000 + b', "channel": "web"}',  # deep
    b'{"session_id": "1", "channel": "w\xff\xfeb", "rp_id": "1", "date": "2026-03-02 10:00:02"}',
    b'{"session_id": NaN, "channel": "web", "rp_id": "1", "date": "2026-03-02 10:00:02"}',
    b'{"session_id": "1", "channel": "web", "rp_id": Infinity, "date": "2026-03-02 10:00:02"}',
    b'{"session_id": "1", "channel": 7, "rp_id": "1", "date": "2026-03-02 10:00:02"}',
    b'{"session_id": "1", "channel": "web", "rp_id": "1", "date": 20260302}',
    b'{"session_id": "1", "channel": "web", "rp_id": "1", "date": "9999-12-31 23:59:59"}',
    b'{"session_id": "1", "channel": "web", "rp_id": "1", "date": "2026-02-30 10:00:00"}',
    b'{"session_id": "1", "channel": "web", "rp_id": "1", "date": "0000-00-00 00:00:00"}',
    b'{"session_id": "1", "channel": "web", "rp_id": "1"}',
    b'"a row that is a string"',
    b"[1, 2, 3]",
    b"null",
    b'{"session_id": "x\\"]}{", "channel": "web", "rp_id": "1", "date": "2026-03-02 1", "z": -1e999}',
]


def body(rows: list[bytes], code: bytes = b'"200"') -> bytes:
    return (
        b'{"code": '
        + code
        + b', "error": null, "msg": " '
        + str(len(rows)).encode()
        + b' records were found", "data": ['
        + b", ".join(rows)
        + b"]}"
    )


def tally() -> Tally:
    return Tally(operation_settings())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spliced=st.lists(
        st.tuples(st.integers(0, len(ROWS)), st.sampled_from(HOSTILE)), min_size=1, max_size=6
    ),
    code=st.sampled_from([b'"200"', b"200", b"200.0", b'" 200 "']),
)
def test_hostile_rows_are_rejected_alone_and_the_good_ones_counted_once(spliced, code):
    good = [json.dumps(r, ensure_ascii=False).encode() for r in ROWS]
    rows = list(good)
    for at, bad in sorted(spliced, reverse=True):
        rows.insert(at, bad)
    answer = decode(body(rows, code))
    assert answer.code == 200 and answer.size == len(rows)
    t = tally()
    first = t.ingest(answer, FIRST - 60, FIRST + 179)
    assert first.received == first.counted + first.duplicates + first.rejected
    assert first.counted == len(good)  # identical rows count as copies, each once
    assert first.rejected == len(spliced)
    assert sum(t.counts.interactions.values()) == len(good)
    again = t.ingest(decode(body(rows, code)), FIRST - 60, FIRST + 179)
    assert (again.counted, again.rejected, again.duplicates) == (0, 0, len(rows))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), how=st.sampled_from(["cut", "flip", "splice"]))
def test_bytes_flipped_cut_or_spliced_anywhere_never_escape(data, how):
    raw = body([json.dumps(r, ensure_ascii=False).encode() for r in ROWS[:40]])
    mutated = bytearray(raw)
    if how == "cut":
        mutated = mutated[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        structural = st.sampled_from(list(b'"\\[]{},:'))
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            mutated[i] = data.draw(st.integers(0, 255) | structural)
    else:
        i = data.draw(st.integers(0, len(raw)))
        mutated[i:i] = data.draw(st.sampled_from(HOSTILE))
    try:
        answer = decode(bytes(mutated))
    except InvalidAnswer:
        return  # a broken envelope: the request fails as invalid_response, and is asked again
    t = tally()
    result = t.ingest(answer, FIRST - 60, FIRST + 179)
    assert result.received == result.counted + result.duplicates + result.rejected
    assert sum(t.counts.interactions.values()) == result.counted


@pytest.mark.parametrize(
    "broken",
    [
        b'{"code": "200", "data": [{"a": 1}',  # cut inside the data
        b"<html>502 Bad Gateway</html>",
        b'{"code": "200", "msg": NaN, "data": []}',  # the envelope's own field
        b"",
    ],
)
def test_a_broken_envelope_is_an_invalid_answer(broken):
    with pytest.raises(InvalidAnswer):
        decode(broken)
