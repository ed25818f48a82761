"""The HTTP side: `/metrics`, a landing page, and health endpoints, served from our own registry.

A thread per connection and a socket timeout mean a slow or broken client only ever holds its own
thread; the pollers never wait for the server and the server never calls the API.
"""

from __future__ import annotations

import contextlib
import html
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Protocol

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.exposition import encoding
from exporter.exposition.collector import ReloadState
from exporter.exposition.webconfig import Security
from exporter.polling.snapshot import Snapshot

TEXT = "text/plain; charset=utf-8"

log = logging.getLogger(__name__)


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Published(Protocol):
    """An operation as the server reports it: a poller, seen only through what it published."""

    def snapshot(self) -> Snapshot: ...

    @property
    def ready(self) -> bool: ...


class SavedState(Protocol):
    """A state store as the server reports it."""

    @property
    def save_failures(self) -> int: ...

    @property
    def last_save_ok(self) -> bool: ...


class App:
    """What the handlers need: the registry to render, the operations and state stores to
    report on."""

    def __init__(
        self,
        registry: CollectorRegistry,
        pollers: Iterable[Published],
        security: Security | None = None,
        live: CollectorRegistry | None = None,
        page: Callable[[encoding.Encoder], bytes] | None = None,
        stores: Sequence[SavedState] = (),
        reload: Callable[[], tuple[bool, str]] | None = None,
        reloads: ReloadState | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        self.registry = registry
        self.notes = notes  # paragraphs of the landing page: how this exporter is set up
        self.pollers = pollers
        self.stores = stores
        # POST /-/reload: re-reads the config, answers whether the new one runs, and why not;
        # `reloads` is its outcome, on the page.
        self.reload = reload
        self.reloads = reloads
        self.security = security
        self.live = live  # rendered at every scrape (process_*), after the cached part
        # Renders what the encoder would write for `registry`, reusing what did not change
        # (WolkvoxCollector.page); without it, the registry is encoded whole.
        self.page = page
        self._pages: dict[tuple[str, bool], tuple[tuple[object, ...], bytes]] = {}
        self._render = threading.Lock()

    def metrics_page(self, accept: str, gzipped: bool) -> tuple[bytes, str]:
        """The exposition in the format asked for, rendered once per commit.

        Everything on the page comes from the pollers' published snapshots and the state
        store's failure count, which change only when a poll commits; so a page is rendered
        once per format (and its gzip once) and served as bytes to every scrape until then. A
        crowd of scrapers after a commit waits for one render rather than doing 200.
        """
        encoder, content_type, openmetrics = encoding.negotiate(accept)
        version = self._version()
        key = (content_type, gzipped)
        with self._render:
            cached = self._pages.get(key)
            if cached is None or not _same(cached[0], version):
                body = self.page(encoder) if self.page is not None else encoder(self.registry)
                body = encoding.cached_part(body, openmetrics)
                if gzipped:
                    body = encoding.compress(body)
                cached = self._pages[key] = (version, body)
        live = encoding.scraped_part(self.live, encoder, openmetrics)
        if gzipped:
            live = encoding.compress(live)
        return cached[1] + live, content_type

    def _version(self) -> tuple[object, ...]:
        """What the cached page was rendered from: a new snapshot, a failed save or a reload
        renders it again."""
        reloads = self.reloads
        return (
            *(p.snapshot() for p in self.pollers),
            *(s.save_failures for s in self.stores),
            *((int(reloads.successful), int(reloads.last_success)) if reloads else ()),
        )

    def ready(self) -> bool:
        """Every operation has published a successful poll, and the state file (if any) was
        saved the last time it was written."""
        return all(p.ready for p in self.pollers) and all(s.last_save_ok for s in self.stores)

    def landing(self) -> bytes:
        rows = []
        for p in self.pollers:
            s = p.snapshot()
            state = "up" if s.up else ("waiting for first poll" if not s.polled else "down")
            rows.append(
                "<tr>"
                f"<td>{html.escape(s.name)}</td><td>{state}</td>"
                f"<td>{_when(s.last_success)}</td>"
                f"<td>{_when(s.collected_until)}</td>"
                f"<td>{html.escape(s.last_error)}</td>"
                "</tr>"
            )
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Wolkvox Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}</style>
</head><body>
<h1>Wolkvox Exporter</h1>
<p>Version {html.escape(__version__)}. Counts routed interactions from the Wolkvox reports API
(diagram_9) for Prometheus.</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul>
{"".join(f"<p>{html.escape(note)}</p>" for note in self.notes)}
<h2>Operations</h2>
<table><tr><th>Operation</th><th>State</th><th>Last successful poll</th>
<th>Collected until</th><th>Last error</th></tr>
{"".join(rows)}
</table></body></html>
"""
        return page.encode()


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Snapshots compare by identity (a new one is published at each commit), counts by value."""
    return len(a) == len(b) and all(
        x is y or (type(x) is int and x == y) for x, y in zip(a, b, strict=True)
    )


class Handler(BaseHTTPRequestHandler):
    app: ClassVar[App]
    timeout = 10  # seconds a client may take to send its request (and finish a TLS handshake)
    server_version = f"wolkvox-exporter/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        # TLS handshakes happen here, in the connection's own thread, so a client that stalls
        # mid-handshake cannot hold up the accept loop. Each connection gets the web config's
        # settings of the moment, so rotated certificates are used without a restart.
        security = self.app.security
        if security is not None and security.tls:
            ctx = security.current().ssl_context
            assert ctx is not None
            self.request.settimeout(self.timeout)
            tls = ctx.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
            self.request = tls
            tls.do_handshake()
            if not security.client_allowed(tls.getpeercert()):
                # Go fails the handshake itself; the nearest we can do is hang up before
                # reading a byte of the request.
                raise ssl.SSLError("client certificate has none of client_allowed_sans")
        super().setup()

    def do_GET(self) -> None:
        if self._admitted():
            self._serve(head=False)

    def do_HEAD(self) -> None:
        if self._admitted():
            self._serve(head=True)

    def _not_allowed(self) -> None:
        if self._admitted():
            self._send(405, b"method not allowed\n", TEXT, extra={"Allow": "GET, HEAD"})

    def do_POST(self) -> None:
        """POST /-/reload, as Prometheus and blackbox_exporter take it: 200 once the new config
        runs, 500 with every problem when it was refused and the old one kept."""
        if self.path.split("?", 1)[0] != "/-/reload" or self.app.reload is None:
            self._not_allowed()
            return
        if self._admitted():
            self._drain()
            ok, message = self.app.reload()
            self._send(200 if ok else 500, message.encode() + b"\n", TEXT)

    def _drain(self) -> None:
        """Read a small request body, so the client sees the answer rather than a reset."""
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and 0 < int(length) <= 65536:
            self.rfile.read(int(length))

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _admitted(self) -> bool:
        """The rate limit, then basic auth, in the toolkit's order."""
        security = self.app.security
        if security is None:
            return True
        if not security.allowed_by_rate():
            self._send(429, b"Too Many Requests\n", TEXT)
            return False
        if security.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, b"Unauthorized\n", TEXT, extra={"WWW-Authenticate": "Basic"})
        return False

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            body, content_type = self.app.metrics_page(self.headers.get("Accept", ""), gzipped)
            extra = {"Content-Encoding": "gzip"} if gzipped else {}
            self._send(200, body, content_type, head, extra)
        elif path == "/":
            self._send(200, self.app.landing(), "text/html; charset=utf-8", head)
        elif path == "/-/healthy":
            self._send(200, b"OK\n", TEXT, head)
        elif path == "/-/reload" and self.app.reload is not None:
            self._send(405, b"use POST to reload the config\n", TEXT, head, {"Allow": "POST"})
        elif path == "/-/ready":
            if self.app.ready():
                self._send(200, b"OK\n", TEXT, head)
            else:
                self._send(
                    503, b"waiting for the first successful poll of every operation\n", TEXT, head
                )
        else:
            self._send(404, b"not found\n", TEXT, head)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        head: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.app.security is not None:
            for name, value in self.app.security.current().headers.items():
                self.send_header(name, value)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "line": format % args})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of scrapers wait in the backlog, not in SYN retries
    # Seconds the accept loop sleeps between looks for a shutdown request when no connection
    # comes; `shutdown` wakes it at once, so this only bounds idle wake-ups (each costs CPU
    # time on virtual machines that charge a waiting thread for its timer).
    poll_interval = 5.0

    def serve_forever(self, poll_interval: float | None = None) -> None:
        super().serve_forever(self.poll_interval if poll_interval is None else poll_interval)

    def shutdown(self) -> None:
        """Stop the accept loop now: it notices a shutdown request only when it wakes, so it
        is woken with connections to itself until it has stopped."""
        waiter = threading.Thread(target=ThreadingHTTPServer.shutdown, args=(self,), daemon=True)
        waiter.start()
        while waiter.is_alive():
            self._wake()
            waiter.join(0.05)

    def _wake(self) -> None:
        host, port = self.server_address[:2]
        if host in ("", "0.0.0.0", "::"):
            host = "::1" if self.address_family == socket.AF_INET6 else "127.0.0.1"
        with contextlib.suppress(OSError):  # the loop then stops at its next look
            socket.create_connection((str(host), int(port)), timeout=1).close()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client that hangs up mid-answer is routine; keep tracebacks out of stderr.
        log.debug("http connection error", extra={"client": client_address[0]}, exc_info=True)


def serve(app: App, host: str, port: int) -> tuple[Server, threading.Thread]:
    """Bind and serve in a background thread; returns the server so the caller can shut it down."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    cls = type("Server6", (Server,), {"address_family": socket.AF_INET6}) if ":" in host else Server
    server = cls((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread
