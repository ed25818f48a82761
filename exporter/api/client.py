"""Talking to the reports API: one GET per call, one call in flight per token, every answer classified.

Retries are a loop of our own rather than urllib3's `Retry`: the classification depends on the body
(a 403 means five different things), each attempt must be counted by outcome in the metrics, and
the token must be released between attempts so operations sharing it are not starved.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import msgspec
import requests
import urllib3

from exporter import __version__
from exporter.api import windowing
from exporter.api.records import Answer, InvalidAnswer, decode, format_wall
from exporter.settings.config import OperationSettings

API = "diagram_9"
T = TypeVar("T")

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """The value of the `outcome` label of `wolkvox_api_requests_total`."""

    SUCCESS = "success"
    EMPTY = "empty"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    SERVER_ERROR = "server_error"
    INVALID_RESPONSE = "invalid_response"
    UNAUTHORIZED = "unauthorized"
    QUOTA_EXCEEDED = "quota_exceeded"
    CONCURRENCY_LIMITED = "concurrency_limited"
    MAINTENANCE = "maintenance"
    TOO_MANY_RECORDS = "too_many_records"
    BAD_REQUEST = "bad_request"
    HTTP_ERROR = "http_error"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"


TRANSIENT = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.CONNECTION_ERROR,
        Outcome.SERVER_ERROR,
        Outcome.INVALID_RESPONSE,
        Outcome.CONCURRENCY_LIMITED,
        # An HTML 404 is usually a proxy or load balancer in the way; it may pass.
        Outcome.NOT_FOUND,
    }
)

_DESCRIPTIONS = {
    Outcome.TIMEOUT: "the API did not answer in time",
    Outcome.CONNECTION_ERROR: "could not connect to the API",
    Outcome.SERVER_ERROR: "the API answered with a server error",
    Outcome.INVALID_RESPONSE: "the API answered with something that is not a diagram_9 envelope",
    Outcome.UNAUTHORIZED: "the API rejected the token (missing, invalid or expired)",
    Outcome.QUOTA_EXCEEDED: "the operation's daily API quota is used up (TOKEN LIMIT EXCEEDED)",
    Outcome.CONCURRENCY_LIMITED: "the API refused a simultaneous request with the same token",
    Outcome.MAINTENANCE: "the API refused the request (403), as it does during maintenance",
    Outcome.TOO_MANY_RECORDS: "the API asked for a narrower date range",
    Outcome.BAD_REQUEST: "the API rejected the request parameters",
    Outcome.HTTP_ERROR: "the API answered with an unexpected HTTP status",
    Outcome.TOO_LARGE: "the answer is larger than polling.max_response_bytes",
    Outcome.NOT_FOUND: (
        "HTTP 404 that is not the API's own (no JSON envelope): check base_url, server and any "
        "proxy in between"
    ),
}


class ApiError(Exception):
    """A call that produced no usable answer. The text never holds the token or any record field."""

    def __init__(
        self,
        outcome: Outcome,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.outcome = outcome
        self.status = status
        self.retry_after = retry_after
        text = _DESCRIPTIONS.get(outcome, str(outcome))
        if status is not None:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class TokenGate:
    """Process-wide rule of the API: a token is never used by two requests at once.

    Operations that share a token share one lock, found by a digest of the token so that the token
    itself is not kept as a key. After each call the token rests `spacing` seconds.
    """

    def __init__(self, spacing: float) -> None:
        self.spacing = spacing
        self._guard = threading.Lock()
        self._locks: dict[bytes, threading.Lock] = {}
        self._last: dict[bytes, float] = {}
        self._paused: dict[bytes, float] = {}

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def pause(self, token: str, until: float) -> None:
        """Stop using a token until `until` (its daily quota is spent), for every operation."""
        with self._guard:
            key = self._key(token)
            self._paused[key] = max(until, self._paused.get(key, 0.0))

    def rest(self, token: str, seconds: float) -> None:
        """Keep a token unused a while longer, e.g. after a timeout, when the API may still be
        working on the request we gave up on and a new one would count as simultaneous."""
        key = self._key(token)
        with self._guard:
            self._last[key] = max(self._last.get(key, 0.0), time.monotonic() + seconds)

    def paused_until(self, token: str, now: float) -> float | None:
        with self._guard:
            until = self._paused.get(self._key(token))
        return until if until is not None and until > now else None

    @contextmanager
    def hold(self, token: str, stop: threading.Event | None = None) -> Iterator[None]:
        key = self._key(token)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        while not lock.acquire(timeout=0.2):
            if stop is not None and stop.is_set():
                raise ApiError(Outcome.CONNECTION_ERROR, "stopping")
        try:
            wait = self._last.get(key, 0.0) + self.spacing - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield
        finally:
            self._last[key] = max(self._last.get(key, 0.0), time.monotonic())
            lock.release()


def _classify_refusal(status: int, text: str) -> Outcome:
    upper = text.upper()
    if "RECORD" in upper and ("REDUCE" in upper or "EXCEED" in upper) and "LIMIT OF" not in upper:
        return Outcome.TOO_MANY_RECORDS
    if status in (401,) or "VALIDATE TOKEN" in upper or "ENTER THE WOLKVOX-TOKEN" in upper:
        return Outcome.UNAUTHORIZED
    if "TOKEN LIMIT EXCEEDED" in upper:
        return Outcome.QUOTA_EXCEEDED
    if "SIMULTANEOUS" in upper or status == 429:
        return Outcome.CONCURRENCY_LIMITED
    if status == 403:
        return Outcome.MAINTENANCE
    if status == 400:
        return Outcome.BAD_REQUEST
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.HTTP_ERROR


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    return None


def _refusal_text(body: bytes) -> str:
    """The msg/error of an error envelope, for classification only; never logged."""
    try:
        answer = decode(body)
    except InvalidAnswer:
        return body[:300].decode("utf-8", "replace")
    return f"{answer.msg} {answer.error}"


RequestObserver = Callable[[Outcome, float], None]


@dataclass(frozen=True)
class TokenInfo:
    """A token's daily quota; None where the API sent something that is not a count."""

    limit: int | None
    used: int | None
    available: int | None


_Count = str | int | float | None


class _TokenData(msgspec.Struct):
    token_limit: _Count = None
    token_use_today: _Count = None
    available_consumption_options: _Count = None


class _TokenEnvelope(msgspec.Struct):
    # The vendor's sample has a list of one object; an object alone is accepted too.
    data: list[_TokenData] | _TokenData | None = None


_TOKEN_INFO = msgspec.json.Decoder(_TokenEnvelope)


def _count(value: _Count) -> int | None:
    """A count as the API sends it: a number, or a string of digits ("1000", " 250 ")."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        return int(text) if text.isascii() and text.isdigit() else None
    return None


@dataclass
class Client:
    """Calls diagram_9 for one operation; `observe` is told the outcome and duration of every attempt."""

    url: str
    token: str
    zone: ZoneInfo
    gate: TokenGate
    observe: RequestObserver
    connect_timeout: float = 10.0
    timeout: float = 60.0
    retries: int = 2
    retry_backoff: float = 2.0
    stop: threading.Event | None = None  # abandon the request in flight
    server: str | None = None
    max_response_bytes: int = 64 << 20
    # No new request once set, the one in flight finishing (a reload retires the operation);
    # also set with `stop`, so waits for the token or before a retry end on either.
    ending: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.ending is None:
            self.ending = self.stop
        headers = {
            "User-Agent": f"wolkvox-exporter/{__version__}",
            # Only encodings whose inflating is bounded below (no brotli or zstd surprises).
            "Accept-Encoding": "gzip, deflate",
        }
        if self.server:
            # The vendor's Postman collection sends it with every call, and one public client
            # found it required; it costs nothing.
            headers["wolkvox_server"] = self.server
        self._pool = connection_pool(self.url, headers, self.connect_timeout, self.timeout)
        self._exchanger = Exchanger(self._pool)

    @classmethod
    def for_operation(
        cls,
        settings: OperationSettings,
        gate: TokenGate,
        observe: RequestObserver,
        *,
        stop: threading.Event | None = None,
        ending: threading.Event | None = None,
        retries: int | None = None,
    ) -> Client:
        """The client of a configured operation, with the polling settings' timeouts and retries."""
        op, polling = settings.operation, settings.polling
        return cls(
            url=op.url,
            token=op.secret(),
            zone=op.zone,
            gate=gate,
            observe=observe,
            connect_timeout=polling.connect_timeout,
            timeout=polling.timeout,
            retries=polling.retries if retries is None else retries,
            retry_backoff=polling.retry_backoff,
            stop=stop,
            ending=ending,
            server=op.server_number,
            max_response_bytes=polling.max_response_bytes,
        )

    def __repr__(self) -> str:  # the dataclass repr would print the token
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self._exchanger.close()
        self._pool.clear()

    def fetch(self, first: int, last: int) -> Answer:
        """Fetch the rows dated in the inclusive range `[first, last]` (epoch seconds)."""
        attempt = 0
        while True:
            try:
                return self._once(first, last)
            except ApiError as exc:
                if exc.outcome not in TRANSIENT or attempt >= self.retries:
                    raise
                delay = self.retry_backoff * (2**attempt)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, 300.0))
                attempt += 1
                if self.ending is not None:
                    if self.ending.wait(delay):
                        raise
                else:
                    time.sleep(delay)

    def token_info(self) -> TokenInfo:
        """The token's daily quota from information.php?api=token_info (which costs one call)."""
        url = self.url.rsplit("/", 1)[0] + "/information.php"
        return self._exchange(url, {"api": "token_info"}, _read_token_info)

    def _once(self, first: int, last: int) -> Answer:
        params = {
            "api": API,
            "date_ini": format_wall(first, self.zone),
            "date_end": format_wall(last, self.zone),
        }
        return self._exchange(self.url, params, _read_answer)

    def _exchange(
        self, url: str, params: dict[str, str], read: Callable[[int, bytes, float | None], T]
    ) -> T:
        """One GET with the token held: timed, its outcome observed, the token rested after a
        timeout. `read` turns status, body and Retry-After into a result or an ApiError."""
        if self.ending is not None and self.ending.is_set():
            raise ApiError(Outcome.CONNECTION_ERROR, "stopping")  # no new request
        with self.gate.hold(self.token, self.ending):
            started = time.perf_counter()
            outcome = Outcome.SUCCESS
            try:
                status, body, retry_after = self._get(url, params)
                result = read(status, body, retry_after)
                if isinstance(result, Answer) and not result.size:
                    outcome = Outcome.EMPTY
                return result
            except ApiError as exc:
                outcome = exc.outcome
                raise
            finally:
                self.observe(outcome, time.perf_counter() - started)
                if outcome is Outcome.TIMEOUT:
                    # The API may still be working on the request given up on; a new one now
                    # would count as simultaneous. Give it as long again as it had.
                    self.gate.rest(self.token, 2 * self.timeout)

    def _get(self, url: str, params: dict[str, str]) -> tuple[int, bytes, float | None]:
        """One GET, bounded as a whole: `timeout` covers connecting, headers and body together
        (a socket timeout bounds each read, so an answer dripping a byte at a time would never
        end), and the body, inflated, may not pass `max_response_bytes`.

        The exchange runs in the client's exchange thread, which the caller stops waiting for
        at the deadline; the thread then hangs up the connection and takes the next request."""
        job = _Job(url + "?" + urlencode(params), self.token, self.max_response_bytes)
        self._exchanger.submit(job)
        deadline = time.monotonic() + self.timeout
        while not job.done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            stopping = self.stop is not None and self.stop.is_set()
            if stopping or time.monotonic() >= deadline:
                job.abandon()
                if stopping:
                    raise ApiError(Outcome.CONNECTION_ERROR, "stopping")
                raise ApiError(Outcome.TIMEOUT, "no complete answer within polling.timeout")
        if job.error is not None:
            raise _classify_exception(job.error)
        assert job.result is not None
        return job.result


def connection_pool(
    url: str, headers: dict[str, str], connect_timeout: float, timeout: float
) -> urllib3.PoolManager:
    """Keep-alive connections to the API's host, reused from one request to the next.

    urllib3 directly rather than `requests`: the exporter makes one kind of GET and reads the
    body itself, and `requests` charged each call for work it does not need (environment,
    netrc and proxy look-ups, hooks, a response object), and closed the streamed connection
    instead of keeping it. What `requests` read from the environment is honoured as it did,
    read once here: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, and REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE, else certifi's CA bundle, to verify the API's certificate.
    """
    ca: str | None = None
    if url.lower().startswith("https:"):
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        ca = ca or requests.utils.DEFAULT_CA_BUNDLE_PATH
    timeouts = urllib3.Timeout(connect=connect_timeout, read=timeout)
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(urlsplit(url).scheme.lower()) or proxies.get("all")
    manager = functools.partial(urllib3.ProxyManager, proxy) if proxy else urllib3.PoolManager
    return manager(
        num_pools=2,
        headers=headers,
        timeout=timeouts,
        retries=False,
        # Two connections: an abandoned exchange may still hold one while the next runs.
        maxsize=2,
        block=False,
        cert_reqs="CERT_REQUIRED" if ca else None,
        ca_certs=ca,
    )


@dataclass
class _Job:
    """One GET for the exchange thread, and what it hands back: the response while it is read
    (so the caller can hang it up at the deadline), then the result or the exception."""

    url: str
    token: str = field(repr=False)  # never printed
    limit: int
    response: urllib3.BaseHTTPResponse | None = None
    result: tuple[int, bytes, float | None] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def abandon(self) -> None:
        """Given up by the caller: wake the thread if it is blocked reading the answer."""
        self.abandoned.set()
        _hang_up(self.response)


class Exchanger:
    """The thread that makes a client's GETs, one at a time, kept for the client's life.

    A thread per request cost its start and its end at every call. One thread per client
    cannot serve a request while an abandoned one still runs (a connect that the deadline gave
    up on ends only at its own timeout): the busy thread is then left to finish alone and a
    new one takes over, so a request never waits for one given up on."""

    def __init__(self, pool: urllib3.PoolManager) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._current: _Job | None = None

    def submit(self, job: _Job) -> None:
        with self._lock:
            busy = self._current is not None and not self._current.done.is_set()
            if self._jobs is None or busy:
                if self._jobs is not None:
                    self._jobs.put(None)  # the busy thread ends after its job
                self._jobs = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve, args=(self._jobs,), name="api-exchange", daemon=True
                ).start()
            self._current = job
            self._jobs.put(job)

    def close(self) -> None:
        with self._lock:
            if self._jobs is not None:
                self._jobs.put(None)
                self._jobs = None

    def _serve(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            try:
                job.result = self._exchange(job)
            except BaseException as exc:  # handed to the caller, who classifies it
                job.error = exc
            finally:
                job.done.set()

    def _exchange(self, job: _Job) -> tuple[int, bytes, float | None]:
        response = self._open(job)
        job.response = response
        complete = False
        try:
            if job.abandoned.is_set():
                raise _Abandoned()
            body = _read_body(response, job.limit, job.abandoned)
            complete = True
            return response.status, body, _retry_after(response)
        finally:
            if not complete:
                response.close()  # a connection with unread bytes is not reused
            response.release_conn()

    def _open(self, job: _Job) -> urllib3.BaseHTTPResponse:
        """The response's head. A kept-alive connection the server closed while idle fails
        before any answer: that request is sent once more, on a new connection (the API never
        saw it, so the token was not in use). Failing before an answer is a connection error,
        as it was through `requests`."""
        pool = self._pool.connection_from_url(job.url)
        made = pool.num_connections
        try:
            return self._send(job)
        except urllib3.exceptions.ProtocolError as exc:
            reason = _reason(exc)
            stale = isinstance(reason, http.client.RemoteDisconnected | ConnectionError)
            if pool.num_connections != made or not stale or job.abandoned.is_set():
                raise _NoAnswer(type(reason).__name__) from None
        try:
            return self._send(job)
        except urllib3.exceptions.ProtocolError as exc:
            raise _NoAnswer(type(_reason(exc)).__name__) from None

    def _send(self, job: _Job) -> urllib3.BaseHTTPResponse:
        return self._pool.urlopen(
            "GET",
            job.url,
            headers={**self._pool.headers, "wolkvox-token": job.token},
            redirect=False,
            retries=False,
            preload_content=False,
        )


class _NoAnswer(ConnectionError):
    """The connection failed before an answer began."""


def _reason(exc: urllib3.exceptions.ProtocolError) -> BaseException:
    """What broke the connection: urllib3 passes it as the error's last argument."""
    reason = exc.args[-1] if exc.args else None
    return reason if isinstance(reason, BaseException) else exc


class _TooLarge(Exception):
    pass


class _Abandoned(Exception):
    pass


def _read_body(response: urllib3.BaseHTTPResponse, limit: int, abandoned: threading.Event) -> bytes:
    """The body, inflated as it arrives, a receive at a time, never more than `limit` bytes: a
    gzip answer that inflates to gigabytes costs no more memory than the limit."""
    announced = response.headers.get("Content-Length", "").strip()
    encoded = response.headers.get("Content-Encoding", "identity").strip().lower()
    if announced.isdigit() and int(announced) > limit and encoded in ("", "identity"):
        raise _TooLarge(f"Content-Length {announced}")
    if encoded not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise urllib3.exceptions.DecodeError(f"unexpected Content-Encoding {encoded}")
    body = bytearray()
    while True:
        chunk = response.read1(1 << 16, decode_content=True)
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise _TooLarge(f"more than {limit} bytes")
        if abandoned.is_set():
            raise _Abandoned()
    return bytes(body)


def _hang_up(response: urllib3.BaseHTTPResponse | None) -> None:
    """Wake a thread blocked reading an abandoned answer by shutting its socket down."""
    if response is None:
        return
    sock = getattr(response.connection, "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _classify_exception(exc: BaseException) -> ApiError:
    """An exception of the exchange as an ApiError; the text names only the exception type."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, _TooLarge):
        return ApiError(Outcome.TOO_LARGE, str(exc))
    if isinstance(
        exc,
        urllib3.exceptions.NewConnectionError  # a ConnectTimeoutError to urllib3, not to us
        | urllib3.exceptions.SSLError
        | urllib3.exceptions.ProxyError
        | ConnectionError,
    ):
        return ApiError(Outcome.CONNECTION_ERROR, type(exc).__name__)
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return ApiError(Outcome.TIMEOUT)
    if isinstance(
        exc,
        urllib3.exceptions.ProtocolError
        | urllib3.exceptions.DecodeError
        | http.client.IncompleteRead,
    ):
        # Cut off mid-answer, or not inflatable: asking again is safe.
        return ApiError(
            Outcome.INVALID_RESPONSE, f"answer cut off or undecodable ({type(exc).__name__})"
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return ApiError(Outcome.HTTP_ERROR, type(exc).__name__)
    return ApiError(Outcome.HTTP_ERROR, f"unexpected {type(exc).__name__}")


def _read_answer(status: int, body: bytes, retry_after: float | None) -> Answer:
    """A diagram_9 reply as an Answer, or the ApiError that classifies it."""
    if status == 404:
        # diagram_9 answers 404 when nothing matches the range, with an empty body or its JSON
        # envelope. Anything else (an HTML page) is a wrong path or a proxy in the way, which
        # taken as "no records" would show a broken setup as a quiet operation forever.
        if not _is_envelope(body):
            raise ApiError(Outcome.NOT_FOUND, status=status)
        return Answer(code=404, msg="", error="", rows=[])
    if status != 200:
        outcome = _classify_refusal(status, _refusal_text(body))
        raise ApiError(outcome, status=status, retry_after=retry_after)
    try:
        answer = decode(body)
    except InvalidAnswer as exc:
        raise ApiError(Outcome.INVALID_RESPONSE, str(exc), status=status) from None
    if answer.code == 404:
        return Answer(code=404, msg="", error="", rows=[])
    if answer.code != 200:
        outcome = _classify_refusal(answer.code or 0, f"{answer.msg} {answer.error}")
        if outcome is Outcome.HTTP_ERROR:
            outcome = Outcome.INVALID_RESPONSE
        raise ApiError(outcome, f"envelope code {answer.code}", status=status)
    if not answer.rows and _classify_refusal(200, answer.msg) is Outcome.TOO_MANY_RECORDS:
        raise ApiError(Outcome.TOO_MANY_RECORDS, status=status)
    if answer.null_data and (answer.declared() or 0) > 0:
        # Taking this as "no rows" would skip the window for good; asking again is safe.
        raise ApiError(
            Outcome.INVALID_RESPONSE,
            "data is null although msg announces records",
            status=status,
        )
    return answer


def _is_envelope(body: bytes) -> bool:
    """Whether a body is empty or a JSON object with any of the envelope's keys."""
    if not body.strip():
        return True
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(value, dict) and not {"code", "msg", "error", "data"}.isdisjoint(value)


def _read_token_info(status: int, body: bytes, retry_after: float | None) -> TokenInfo:
    if status == 404 and not _is_envelope(body):
        raise ApiError(Outcome.NOT_FOUND, status=status)
    if status != 200:
        outcome = _classify_refusal(status, _refusal_text(body))
        raise ApiError(outcome, status=status, retry_after=retry_after)
    try:
        data = _TOKEN_INFO.decode(body).data
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError(
            Outcome.INVALID_RESPONSE, "token_info answer is not the documented shape"
        ) from None
    if isinstance(data, list):
        data = data[0] if data else None
    info = data or _TokenData()
    return TokenInfo(
        limit=_count(info.token_limit),
        used=_count(info.token_use_today),
        available=_count(info.available_consumption_options),
    )


def fetch_within_cap(
    client: Client,
    first: int,
    last: int,
    cap: int,
    on_answer: Callable[[Answer, int, int], None],
    operation: str,
) -> None:
    """Fetch the inclusive range `[first, last]`, halving it while an answer comes back at the
    record cap, or the API asks for a narrower range, or the answer is larger than
    `max_response_bytes`; `on_answer` gets each complete answer with its range, in date order.
    The halves share their middle second, so the receiver must dedupe (the Tally does).

    A range that spans a fall-back is asked in parts cut at the change: its wall-time bounds
    would otherwise be inverted, which an API comparing wall time refuses or answers empty."""
    for lo, hi in windowing.wall_ordered(first, last, client.zone):
        _fetch_within_cap(client, lo, hi, cap, on_answer, operation)


def _fetch_within_cap(
    client: Client,
    first: int,
    last: int,
    cap: int,
    on_answer: Callable[[Answer, int, int], None],
    operation: str,
) -> None:
    answer: Answer | None
    refused = Outcome.TOO_MANY_RECORDS
    try:
        answer = client.fetch(first, last)
        full = answer.size >= cap
    except ApiError as exc:
        if exc.outcome not in (Outcome.TOO_MANY_RECORDS, Outcome.TOO_LARGE):
            raise
        answer, full, refused = None, True, exc.outcome
    if full:
        halves = windowing.split(first, last)
        if halves is not None:
            for lo, hi in halves:
                _fetch_within_cap(client, lo, hi, cap, on_answer, operation)
            return
        if answer is None:
            raise ApiError(refused, "even a one-second range is too large")
        log.warning(
            "a one-second range holds the record cap; rows beyond it may be missing",
            extra={"operation": operation, "cap": cap},
        )
    assert answer is not None
    on_answer(answer, first, last)
