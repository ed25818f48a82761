"""The HTTP server and the exposition it serves, checked with promtool and the client parser."""

from __future__ import annotations

import gzip
import logging
import socket
import urllib.error
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.api import windowing
from exporter.cli.reloading import ReloadStatus
from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.tools.simulator import Traffic
from tests.support.harness import TOKEN, Clock, make_config, make_poller
from tests.support.process import assert_private

START = 1_790_000_100


def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def poll(ctx: dict[str, Any], times: int = 3) -> None:
    for _ in range(times):
        ctx["clock"].now = windowing.next_poll_at(ctx["clock"].now, 300, 60) + 0.5
        ctx["poller"].poll_once()


def test_ready_only_after_a_successful_poll(running):
    assert get(running["base"] + "/-/healthy")[0] == 200
    assert get(running["base"] + "/-/ready")[0] == 503
    poll(running, 1)
    assert get(running["base"] + "/-/ready")[0] == 200


def test_landing_page_links_and_reports_status(running):
    poll(running, 1)
    status, headers, body = get(running["base"] + "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'href="metrics"' in page and "main" in page and ">up<" in page


def test_unknown_paths_and_methods(running):
    assert get(running["base"] + "/nope")[0] == 404
    assert get(running["base"] + "/metrics", method="POST")[0] == 405
    assert get(running["base"] + "/metrics", method="HEAD")[0] == 200


def test_openmetrics_and_gzip_are_negotiated(running):
    poll(running, 1)
    _, headers, body = get(
        running["base"] + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    _, headers, body = get(running["base"] + "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"wolkvox_up" in gzip.decompress(body)


def test_a_stalled_client_does_not_block_others(running):
    stalled = socket.create_connection(("127.0.0.1", int(running["base"].rsplit(":", 1)[1])))
    stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    try:
        assert get(running["base"] + "/-/healthy")[0] == 200
    finally:
        stalled.close()
    garbage = socket.create_connection(("127.0.0.1", int(running["base"].rsplit(":", 1)[1])))
    garbage.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    reply = b""
    while chunk := garbage.recv(4096):
        reply += chunk
    garbage.close()
    assert b"400" in reply and b"Bad request" in reply
    assert get(running["base"] + "/metrics")[0] == 200


def test_no_token_or_customer_data_in_metrics_logs_or_pages(running, caplog):
    caplog.set_level(logging.DEBUG)
    poll(running, 2)
    running["sim"].tokens.clear()
    poll(running, 1)  # a failure: its error text reaches logs and the landing page
    snap = running["poller"].snapshot()
    assert not snap.up and snap.last_error
    exposed = "\n".join(
        [get(running["base"] + p)[2].decode() for p in ("/metrics", "/", "/-/ready")]
        + [caplog.text]
    )
    rows = running["traffic"].rows(START - 3600, int(running["clock"].now))
    assert rows
    assert_private(exposed, TOKEN, rows)


def test_a_page_is_rendered_once_per_commit_and_format(sim_factory):
    """Scrapes between two polls get the same bytes without rendering again; a commit, a new
    format or gzip render anew."""
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=21, rate_per_minute=120), clock)
    poller = make_poller(make_config(url), clock)
    renders = 0

    class Counting(WolkvoxCollector):
        def collect(self):
            nonlocal renders
            renders += 1
            yield from super().collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Counting([poller], 300))
    httpd, _ = server.serve(server.App(registry, [poller]), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    try:
        ctx = {"clock": clock, "poller": poller}
        poll(ctx, 1)
        pages = {get(base)[2] for _ in range(20)}
        assert len(pages) == 1 and renders == 1
        om = get(base, {"Accept": "application/openmetrics-text; version=1.0.0"})[2]
        assert om.endswith(b"# EOF\n") and renders == 2
        zipped = get(base, {"Accept-Encoding": "gzip"})[2]
        assert gzip.decompress(zipped) in pages and renders == 3
        poll(ctx, 1)  # a commit: the next scrape shows it
        assert get(base)[2] not in pages and renders == 4
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_refused_reload_shows_on_the_next_scrape_without_waiting_for_a_poll(sim_factory):
    """The page is rendered once per commit; a reload is not a commit, but its outcome must
    reach the very next scrape (an alert waits on it)."""
    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=21, rate_per_minute=60), clock)
    poller = make_poller(make_config(url), clock)
    clock.now += 400
    poller.poll_once()
    status = ReloadStatus()
    registry = CollectorRegistry(auto_describe=False)
    collector = WolkvoxCollector([poller], 300, None, status)
    registry.register(collector)
    app = server.App(registry, [poller], page=collector.page, reloads=status)
    before, _ = app.metrics_page("", gzipped=False)
    assert b"wolkvox_exporter_config_last_reload_successful 1.0" in before
    status.successful = False  # what a refused reload does, no poll in between
    after, _ = app.metrics_page("", gzipped=False)
    assert b"wolkvox_exporter_config_last_reload_successful 0.0" in after
