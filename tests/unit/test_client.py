"""The client against a scripted HTTP server: each kind of answer becomes the right outcome."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.api.client import ApiError, Client, Outcome, TokenGate
from tests.support.harness import TOKEN

Reply = tuple[int, bytes, dict[str, str]]


class Script:
    def __init__(self) -> None:
        self.replies: list[Reply | float] = []
        self.seen: list[tuple[str, dict[str, str]]] = []


class _QuietServer(ThreadingHTTPServer):
    """The scripted API: a client that gives up (a timeout, a hung request) leaves its reply
    writing into a closed socket, which is expected, not an error to print into whichever test
    runs next."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def api() -> Iterator[tuple[Script, str]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.seen.append((self.path, dict(self.headers)))
            reply = script.replies.pop(0) if script.replies else (200, b"{}", {})
            if isinstance(reply, float):
                time.sleep(reply)
                reply = (200, b"{}", {})
            status, body, headers = reply
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = _QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    yield script, f"http://127.0.0.1:{srv.server_address[1]}/api/v2/reports_manager.php"
    srv.shutdown()
    srv.server_close()


def client(
    url: str,
    observed: list[Outcome],
    retries: int = 2,
    timeout: float = 2.0,
    max_response_bytes: int = 64 << 20,
) -> Client:
    return Client(
        url=url,
        token=TOKEN,
        zone=ZoneInfo("America/Bogota"),
        gate=TokenGate(0),
        observe=lambda o, _s: observed.append(o),
        retries=retries,
        retry_backoff=0.0,
        timeout=timeout,
        max_response_bytes=max_response_bytes,
    )


def env(code: object, msg: str, data: object = None) -> bytes:
    return json.dumps({"code": code, "error": None, "msg": msg, "data": data}).encode()


ROW = {"date": "2026-01-18 19:34:31", "channel": "web", "rp_id": "1", "routing_answer": "x"}


def test_request_carries_token_header_api_and_wall_time_dates(api):
    script, url = api
    script.replies = [(200, env("200", " 1 records were found", [ROW]), {})]
    answer = client(url, []).fetch(1768782871, 1768782871 + 59)
    path, headers = script.seen[0]
    assert headers["wolkvox-token"] == TOKEN
    assert "api=diagram_9" in path
    assert "date_ini=20260118193431" in path and "date_end=20260118193530" in path
    assert TOKEN not in path
    assert len(answer.rows) == 1


def test_404_means_no_records(api):
    script, url = api
    script.replies = [(404, b"", {})]
    seen: list[Outcome] = []
    assert client(url, seen).fetch(0, 10).rows == []
    assert seen == [Outcome.EMPTY]


@pytest.mark.parametrize(
    ("status", "message", "outcome"),
    [
        (401, "PLEASE ENTER THE WOLKVOX-TOKEN", Outcome.UNAUTHORIZED),
        (403, "PLEASE VALIDATE TOKEN", Outcome.UNAUTHORIZED),
        (403, "TOKEN LIMIT EXCEEDED", Outcome.QUOTA_EXCEEDED),
        (403, "", Outcome.MAINTENANCE),
        (400, "SOME PARAMETERS ARE REQUIRED", Outcome.BAD_REQUEST),
        (400, "THE API YOU WANT TO CONSULT DOES NOT EXIST", Outcome.BAD_REQUEST),
    ],
)
def test_refusals_are_classified_and_not_retried(api, status, message, outcome):
    script, url = api
    script.replies = [(status, env(str(status), message), {})] * 3
    seen: list[Outcome] = []
    with pytest.raises(ApiError) as info:
        client(url, seen).fetch(0, 10)
    assert info.value.outcome is outcome
    assert seen == [outcome]
    assert TOKEN not in str(info.value)


def test_an_error_envelope_inside_http_200_is_still_an_error(api):
    script, url = api
    script.replies = [(200, env(403, "TOKEN LIMIT EXCEEDED"), {})]
    with pytest.raises(ApiError) as info:
        client(url, []).fetch(0, 10)
    assert info.value.outcome is Outcome.QUOTA_EXCEEDED


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ((500, b"<html>oops</html>", {}), Outcome.SERVER_ERROR),
        ((200, b'{"code": "200", "data": [', {}), Outcome.INVALID_RESPONSE),
        (
            (403, env("403", "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN"), {}),
            Outcome.CONCURRENCY_LIMITED,
        ),
    ],
)
def test_transient_failures_are_retried_then_succeed(api, reply, outcome):
    script, url = api
    script.replies = [reply, reply, (200, env(200, "1 records were found", [ROW]), {})]
    seen: list[Outcome] = []
    assert len(client(url, seen).fetch(0, 10).rows) == 1
    assert seen == [outcome, outcome, Outcome.SUCCESS]


def test_retries_give_up_after_the_configured_number(api):
    script, url = api
    script.replies = [(502, b"", {})] * 5
    seen: list[Outcome] = []
    with pytest.raises(ApiError):
        client(url, seen, retries=1).fetch(0, 10)
    assert seen == [Outcome.SERVER_ERROR] * 2


def test_retry_after_is_honoured(api):
    script, url = api
    script.replies = [(503, b"", {"Retry-After": "1"}), (404, b"", {})]
    started = time.monotonic()
    client(url, []).fetch(0, 10)
    assert time.monotonic() - started >= 1.0


def test_a_hung_request_times_out(api):
    script, url = api
    script.replies = [3.0]
    seen: list[Outcome] = []
    with pytest.raises(ApiError):
        client(url, seen, retries=0, timeout=0.5).fetch(0, 10)
    assert seen == [Outcome.TIMEOUT]


def test_unreachable_api_is_a_connection_error():
    seen: list[Outcome] = []
    with pytest.raises(ApiError) as info:
        client("http://127.0.0.1:9/api", seen, retries=0).fetch(0, 10)
    assert info.value.outcome is Outcome.CONNECTION_ERROR
    assert TOKEN not in repr(client("http://127.0.0.1:9/api", []))


def test_too_many_records_message_asks_for_a_split(api):
    script, url = api
    script.replies = [
        (400, env("400", "If your query exceeds 6000 records, reduce the date range"), {})
    ]
    with pytest.raises(ApiError) as info:
        client(url, []).fetch(0, 10)
    assert info.value.outcome is Outcome.TOO_MANY_RECORDS


@pytest.mark.parametrize(
    ("body", "empty"),
    [
        (b"", True),
        (env("404", "Validate dates entered", []), True),
        (env(404, "", None), True),
        (b"<html><body><h1>404 Not Found</h1>nginx</body></html>", False),
        (b'{"detail": "Not Found"}', False),  # some other service's JSON, not the envelope
        (b"Not Found", False),
    ],
)
def test_a_404_is_no_records_only_when_it_looks_like_the_api(api, body, empty):
    """A wrong base_url path or a proxy answers 404 too: taken as "no records", the operation
    would look up and quiet forever."""
    script, url = api
    script.replies = [(404, body, {"Content-Type": "text/html"})] * 3
    seen: list[Outcome] = []
    if empty:
        assert client(url, seen).fetch(0, 10).rows == []
        assert seen == [Outcome.EMPTY]
    else:
        with pytest.raises(ApiError) as info:
            client(url, seen, retries=2).fetch(0, 10)
        assert info.value.outcome is Outcome.NOT_FOUND
        assert "base_url" in str(info.value)
        assert seen == [Outcome.NOT_FOUND] * 3  # retried like other failures


TOKEN_INFO_SAMPLE = (
    b'{"code": "200", "error": null, "msg": " 1 records were found", "data": [{"description": '
    b'"Token reportes", "token_limit": "5000", "token_use_today": "132", "all_token_today": '
    b'"164", "available_consumption_options": "4868"}]}'
)


@pytest.mark.parametrize(
    ("body", "limit", "used"),
    [
        (TOKEN_INFO_SAMPLE, 5000, 132),  # the vendor's documented shape
        (b'{"code": 200, "data": {"token_limit": 5000, "token_use_today": 7}}', 5000, 7),
        (b'{"code": "200", "data": [{"token_limit": 1000.0, "token_use_today": " 9 "}]}', 1000, 9),
        (b'{"code": "200", "data": [{"description": "x"}]}', None, None),  # fields missing
        (b'{"code": "200", "data": []}', None, None),
        (b'{"code": "200", "data": [{"token_limit": "n/a", "token_use_today": -3}]}', None, None),
    ],
)
def test_token_info_reads_the_documented_shape_and_its_variants(api, body, limit, used):
    script, url = api
    script.replies = [(200, body, {})]
    info = client(url, []).token_info()
    assert (info.limit, info.used) == (limit, used)
    assert script.seen[0][0].startswith("/api/v2/information.php?api=token_info")


def test_every_call_sends_the_wolkvox_server_header(api):
    from exporter.settings.config import Operation, OperationSettings, Polling

    def op(**fields: str) -> Operation:
        return Operation.model_validate({"name": "a", "token": TOKEN, **fields})

    assert op(server="0032").server_number == "0032"
    assert op(base_url="https://wv0104.wolkvox.com").server_number == "0104"
    assert op(base_url="http://127.0.0.1:8089").server_number is None
    script, url = api
    configured = op(server="0032", base_url=url.split("/api/")[0])
    settings = OperationSettings(configured, Polling(retries=0))
    c = Client.for_operation(settings, TokenGate(0), lambda *_: None)
    script.replies = [(404, b"", {}), (200, TOKEN_INFO_SAMPLE, {})]
    c.fetch(0, 10)
    c.token_info()
    assert [headers.get("wolkvox_server") for _path, headers in script.seen] == ["0032", "0032"]


@pytest.mark.parametrize(
    ("msg", "declared"),
    [
        (" 1 records were found", 1),
        ("12 records were are found", 12),
        ("3 record was found", 3),
        ("No records found", None),
    ],
)
def test_the_declared_count_is_read_from_every_msg_variant(msg, declared):
    from exporter.api.records import decode

    assert decode(env("200", msg, [])).declared() == declared
