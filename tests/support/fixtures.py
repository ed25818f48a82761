"""Fixtures that tests of more than one kind use, loaded for every test by tests/conftest.py:
a poller behind a real /metrics server (`running`), a raw socket server playing a hostile API
(`raw_api`), and a throw-away PKI (`pki`)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, make_config, make_poller
from tests.support.pki import make_pki

START = 1_790_000_100  # a multiple of 300
Reply = Callable[[socket.socket], None]


@pytest.fixture
def running(sim_factory) -> Iterator[dict[str, Any]]:
    clock = Clock(START)
    traffic = Traffic(seed=21, rate_per_minute=120, duplicate_fraction=0.05)
    sim, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url), clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([poller], 300))
    httpd, _ = server.serve(server.App(registry, [poller]), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield {"base": base, "poller": poller, "clock": clock, "traffic": traffic, "sim": sim}
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def raw_api() -> Iterator[Callable[[Reply], str]]:
    """Serve each connection with `reply(conn)`; returns the diagram_9 URL."""
    listeners: list[socket.socket] = []

    def start(reply: Reply) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        listeners.append(srv)

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=_serve, args=(conn, reply), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}/api/v2/reports_manager.php"

    yield start
    for srv in listeners:
        srv.close()


def _serve(conn: socket.socket, reply: Reply) -> None:
    with conn:
        try:
            conn.recv(65536)  # the request
            reply(conn)
        except OSError:
            pass  # the client hung up, as it should


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))
