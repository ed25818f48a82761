"""How the client holds its connection and its exchange thread: one kept-alive connection per
operation, one thread for its life, and neither makes a request fail or wait that did not
before (a connection the server closed while idle, an exchange given up on, a proxy)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.api.client import ApiError, Client, Outcome, TokenGate
from tests.support.harness import TOKEN
from tests.support.pki import make_pki

ROW = {"date": "2026-01-18 19:34:31", "channel": "web", "rp_id": "1", "routing_answer": "x"}
BODY = json.dumps({"code": "200", "error": None, "msg": "1 records were found", "data": [ROW]})


class Server:
    """A keep-alive HTTP/1.1 API that notes which connection each request came on, and can be
    told to hang up on a connection's n-th request without answering (what a server that
    closes idle connections does to a request sent just as it closes)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[int, str, dict[str, str]]] = []  # (connection, line, headers)
        self.drop_nth: int | None = None  # hang up on this request of every connection
        self.delays: list[float] = []  # seconds to wait before answering, request by request
        self._connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server._connections += 1
                self.connection_number = server._connections
                self.served = 0

            def do_GET(self) -> None:
                self.served += 1
                server.requests.append((self.connection_number, self.path, dict(self.headers)))
                if server.drop_nth == self.served:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if server.delays:
                    time.sleep(server.delays.pop(0))
                body = BODY.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up leaves a reply writing into a closed socket

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def connections(self) -> set[int]:
        return {c for c, _, _ in self.requests}


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def make_client(url: str, seen: list[Outcome], retries: int = 0, timeout: float = 5.0) -> Client:
    return Client(
        url=url,
        token=TOKEN,
        zone=ZoneInfo("America/Bogota"),
        gate=TokenGate(0),
        observe=lambda o, _s: seen.append(o),
        retries=retries,
        retry_backoff=0.0,
        timeout=timeout,
    )


def exchange_threads() -> int:
    return sum(t.name == "api-exchange" and t.is_alive() for t in threading.enumerate())


def test_requests_share_one_kept_alive_connection_and_one_thread(server):
    before = exchange_threads()
    seen: list[Outcome] = []
    client = make_client(f"http://127.0.0.1:{server.port}/api/v2/reports_manager.php", seen)
    try:
        for i in range(5):
            assert len(client.fetch(i * 60, i * 60 + 59).rows) == 1
        assert exchange_threads() == before + 1
    finally:
        client.close()
    assert seen == [Outcome.SUCCESS] * 5
    assert len(server.requests) == 5 and len(server.connections()) == 1


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_without_a_failure(server):
    """Every connection's second request is hung up on: the client sends it again on a new
    connection, and no attempt is observed as failed."""
    server.drop_nth = 2
    seen: list[Outcome] = []
    client = make_client(f"http://127.0.0.1:{server.port}/api/v2/reports_manager.php", seen)
    try:
        for i in range(3):
            assert len(client.fetch(i * 60, i * 60 + 59).rows) == 1
    finally:
        client.close()
    assert seen == [Outcome.SUCCESS] * 3
    assert len(server.connections()) == 3  # the first, and one after each hang-up


def test_a_new_connection_hung_up_on_is_a_connection_error_not_sent_again(server):
    server.drop_nth = 1
    seen: list[Outcome] = []
    client = make_client(f"http://127.0.0.1:{server.port}/api/v2/reports_manager.php", seen)
    try:
        with pytest.raises(ApiError) as info:
            client.fetch(0, 59)
    finally:
        client.close()
    assert info.value.outcome is Outcome.CONNECTION_ERROR
    assert seen == [Outcome.CONNECTION_ERROR]
    assert len(server.requests) == 1


def test_a_request_does_not_wait_for_an_exchange_given_up_on(server):
    """The first answer takes 3 s against a 0.5 s deadline; the next request is answered,
    on another connection and thread, while the first exchange still hangs."""
    server.delays = [3.0]
    seen: list[Outcome] = []
    client = make_client(
        f"http://127.0.0.1:{server.port}/api/v2/reports_manager.php", seen, timeout=0.5
    )
    try:
        with pytest.raises(ApiError):
            client.fetch(0, 59)
        assert len(client.fetch(60, 119).rows) == 1
    finally:
        client.close()
    assert seen == [Outcome.TIMEOUT, Outcome.SUCCESS]


def test_the_proxy_of_the_environment_is_used_as_requests_did(server, monkeypatch):
    """HTTP_PROXY names a proxy (this server, which answers in the API's place): the request
    goes to it with the API's absolute URL, token header included."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    seen: list[Outcome] = []
    client = make_client("http://api.wolkvox.invalid/api/v2/reports_manager.php", seen)
    try:
        assert len(client.fetch(0, 59).rows) == 1
    finally:
        client.close()
    _, line, headers = server.requests[0]
    assert line.startswith("http://api.wolkvox.invalid/api/v2/reports_manager.php?api=diagram_9")
    assert headers["wolkvox-token"] == TOKEN


def test_no_proxy_is_honoured(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    seen: list[Outcome] = []
    client = make_client(f"http://127.0.0.1:{server.port}/api/v2/reports_manager.php", seen)
    try:
        assert len(client.fetch(0, 59).rows) == 1
    finally:
        client.close()
    assert seen == [Outcome.SUCCESS]


def test_the_api_certificate_is_verified_against_the_bundle_requests_used(tmp_path, monkeypatch):
    """REQUESTS_CA_BUNDLE names the CA that signed the API's certificate: the answer is read.
    Without it (certifi's bundle), the same server is refused: a connection error, no body."""
    pki = make_pki(tmp_path / "pki")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    srv = Server(tls)
    url = f"https://localhost:{srv.port}/api/v2/reports_manager.php"
    for name in ("HTTPS_PROXY", "https_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki / "ca.crt"))
        seen: list[Outcome] = []
        trusting = make_client(url, seen)
        assert len(trusting.fetch(0, 59).rows) == 1
        trusting.close()
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        stranger = make_client(url, seen)
        with pytest.raises(ApiError) as info:
            stranger.fetch(0, 59)
        stranger.close()
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
    assert info.value.outcome is Outcome.CONNECTION_ERROR
    assert seen == [Outcome.SUCCESS, Outcome.CONNECTION_ERROR]
    assert len(srv.requests) == 1
