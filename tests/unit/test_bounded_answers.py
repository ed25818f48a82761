"""Answers that would cost unbounded memory or time: each ends within its bounds, as an outcome.

A raw socket server plays the hostile API, so the bytes on the wire are exactly the test's.
"""

from __future__ import annotations

import functools
import socket
import time
import zlib
from collections.abc import Callable

import pytest

from exporter.api.client import ApiError, Client, Outcome
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, expected_counts, make_config, make_poller
from tests.unit.test_client import client as client_for
from tests.unit.test_poller import START, run_polls

Reply = Callable[[socket.socket], None]


def client(url: str, seen: list[Outcome], timeout: float = 1.0, retries: int = 0) -> Client:
    """test_client's client, with a 1 MiB body limit and no retries unless asked."""
    return client_for(url, seen, retries, timeout, max_response_bytes=1 << 20)


def drip_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(200):
        conn.sendall(b" ")
        time.sleep(0.1)


def drip_headers(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


@pytest.mark.parametrize("reply", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_answer_ends_as_a_timeout_within_the_timeout(raw_api, reply):
    """`polling.timeout` bounds the whole exchange, not each read."""
    seen: list[Outcome] = []
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        client(raw_api(reply), seen, timeout=1.0).fetch(0, 10)
    assert info.value.outcome is Outcome.TIMEOUT and seen == [Outcome.TIMEOUT]
    # A bound, not a speed: without it the request would run for 20 seconds.
    assert time.monotonic() - started < 4 * 1.0


def cut_off(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"code": "200", "data": [')


def test_an_answer_cut_off_is_invalid_and_asked_again(raw_api):
    seen: list[Outcome] = []
    with pytest.raises(ApiError) as info:
        client(raw_api(cut_off), seen, retries=2).fetch(0, 10)
    assert info.value.outcome is Outcome.INVALID_RESPONSE
    assert seen == [Outcome.INVALID_RESPONSE] * 3


def announces_2gb(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n{")
    time.sleep(2)


def test_an_answer_announcing_more_than_the_limit_is_not_read(raw_api):
    seen: list[Outcome] = []
    with pytest.raises(ApiError) as info:
        client(raw_api(announces_2gb), seen, timeout=5.0).fetch(0, 10)
    assert info.value.outcome is Outcome.TOO_LARGE


# Peak memory is measured in a process of its own, so that the test process's history does
# not hide it: the client reads a hostile answer there and prints its peak RSS.
_MEASURE = """
import json, sys
from zoneinfo import ZoneInfo
from exporter.api.client import ApiError, Client, TokenGate
c = Client(url=sys.argv[1], token="t", zone=ZoneInfo("UTC"), gate=TokenGate(0),
           observe=lambda *_: None, timeout=60.0, retries=0, max_response_bytes=64 << 20)
try:
    c.fetch(0, 10)
    outcome = "success"
except ApiError as exc:
    outcome = str(exc.outcome)
# VmHWM is this process image's own peak; ru_maxrss would carry the forking parent's over exec.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "peak_mb": int(hwm.split()[1]) / 1024}))
"""


@functools.cache
def _gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"0" * (1 << 20)
    parts = [packer.compress(b'{"code": "200", "msg": "", "data": ["')]
    parts += [packer.compress(zeros) for _ in range(inflated >> 20)]
    parts.append(packer.compress(b'"]}') + packer.flush())
    return b"".join(parts)


def gzip_bomb(conn: socket.socket) -> None:
    body = _gzip_bomb(1 << 30)  # 1 GiB inflated, about a megabyte on the wire
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def endless_chunks(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * (1 << 20)
    for _ in range(200):  # 200 MB, with no length announced
        conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.sendall(b"0\r\n\r\n")


def test_answers_too_large_are_split_like_answers_at_the_record_cap(sim_factory):
    clock = Clock(START)
    traffic = Traffic(seed=8, rate_per_minute=60, daily_curve=False)
    _, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url, max_response_bytes="40KiB"), clock)
    run_polls(poller, clock, 6, 300, 60)
    snap = poller.snapshot()
    assert snap.up and snap.requests[Outcome.TOO_LARGE] > 0
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1, now=clock.now)
    assert snap.counts.interactions == dict(expected_counts(rows))
