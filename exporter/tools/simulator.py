"""A simulated Wolkvox reports API (diagram_9) that is as strict as the real one is documented to be.

It serves `GET /api/v2/reports_manager.php` and `/api/v2/information.php?api=token_info` (or
`/<tenant>/api/v2/...` for several operations), counts every call against the token's daily quota,
requires the `wolkvox-token` header, parses `date_ini`/`date_end` strictly as `YYYYmmddHHiiss` wall
time of its zone, treats both bounds as inclusive, answers 404 when nothing matches, sends `code` as
a string, enforces the per-call record cap, and refuses a second request with a token that already
has one in flight (403, as the vendor documents) while counting each such violation.

Traffic is generated per minute from a seeded RNG, so any range can be asked for at any time and
the ground truth of a range is a pure function of the seed: the demo and the tests rely on that.
"""

from __future__ import annotations

import functools
import json
import math
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

SELECT_BY = ("date", "close")
CHANNELS = (
    ("whatsapp", 40),
    ("web", 15),
    ("facebook_page", 10),
    ("instagram", 8),
    ("email", 8),
    ("whatsapp official direct", 7),
    ("crm+webhook", 5),
    ("facebook", 4),
    ("configurationbox", 3),
)
ROUTING_POINTS = ("101", "102", "205", "310")
# The flow's replies by what they are, as the default outcome rules read them: the simulator
# knows what it wrote, so its ground truth does not depend on the exporter's regexes.
QUESTIONS = (
    "Hola, bienvenido. ¿En qué podemos ayudarte?",
    "Selecciona una opción: 1. Saldo 2. Pagos 3. Asesor",
    "¿Deseas algo más?",
)
FALLBACKS = (
    "Lo siento, no entendí tu mensaje. ¿Puedes escribirlo de otra forma?",
    "Desculpe, não entendi.",
    "Sorry, I didn't understand that.",
)
STATEMENTS = ("Por favor escribe tu número de documento", "Tu solicitud fue registrada")
GOODBYES = ("Gracias por contactarnos", "Tu solicitud fue registrada")
BOT_REPLIES = (*QUESTIONS, *STATEMENTS, *GOODBYES[:1])
TRANSFER = "transfer_skill"
_KINDS = {
    **dict.fromkeys(QUESTIONS, "question"),
    **dict.fromkeys(FALLBACKS, "fallback"),
    **dict.fromkeys((*STATEMENTS, *GOODBYES), "bot_answer"),
    TRANSFER: "transferred",
    "": "none",
}
# How far after its session's start a row may be dated: the longest conversation (16 turns of
# at most two minutes), and a message sent again after Wolkvox's 60-minute timeout.
THINK = (5, 10, 20, 30, 45, 60, 90, 120)  # seconds between two messages
SESSION_SPAN = 15 * THINK[-1]
RETURN_AFTER = (3660, 4500)
# Customers who come back: per minute of the hour, a few regulars, so that one customer's
# sessions start at least an hour apart.
REGULARS = 40


def outcome_of(answer: str) -> str:
    """What the default outcome rules make of a reply the simulator wrote."""
    if answer.startswith("MaskedText:"):
        return "masked_input"
    return _KINDS[answer]


QUERIES = ("hola", "quiero saber mi saldo", "necesito un asesor", "1", "2", "3", "gracias")
FIRST_NAMES = ("Ana", "Luis", "María", "Carlos", "Sofía", "Jorge", "Valentina", "Andrés")

# Relative traffic by local hour: quiet nights, a morning and an afternoon peak.
_DAY_CURVE = tuple(
    0.08 + 0.92 * max(0.0, math.sin(math.pi * (h - 6) / 15)) ** 1.5 for h in range(24)
)


@dataclass(frozen=True)
class Row:
    """A generated record and when the API starts returning it (publishing lags the date).

    `selected` is the time by which the API selects the row for a request range: its date, or
    with `Traffic.select_by = "close"` the moment its session closed, as a live-checked client
    found chat_1 does. A request for `[first, last]` returns the rows selected in it.
    """

    date: int
    published: float
    record: dict[str, object]  # as the API sends it: JSON values, typed by whoever reads them
    selected: int = -1

    def __post_init__(self) -> None:
        if self.selected < 0:
            object.__setattr__(self, "selected", self.date)

    @functools.cached_property
    def body(self) -> bytes:
        """The record as an answer carries it, encoded once: the look-back and catch-up ask for
        the same rows many times."""
        return json.dumps(self.record, ensure_ascii=False).encode()


@dataclass
class Traffic:
    """Deterministic routing traffic of one operation."""

    seed: int = 1
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("America/Bogota"))
    rate_per_minute: float = 120.0
    daily_curve: bool = True
    late_fraction: float = 0.05  # rows published well after their date
    late_max: float = 120.0  # seconds
    duplicate_fraction: float = 0.01  # rows the API returns twice (the same message sent twice)
    start: int | None = None  # no traffic before this epoch second
    stop: int | None = None  # no traffic from this epoch second on
    # Which time a request range selects rows by: "date" (each row's own), or "close" (when
    # its session closed: up to `close_delay` seconds after the session's last row).
    select_by: str = "date"
    close_delay: float = 600.0
    # Compare a request's bounds with the selection time as wall-time strings, as an API that
    # keeps the operation's wall time does (a MySQL DATETIME BETWEEN): a request for a repeated
    # hour returns the rows of both occurrences. Ground truth (`rows`, `truth`) is unchanged.
    wall_time: bool = False
    # Scales the time between a conversation's messages (5 s to 2 min) and before a message
    # after the timeout (61 to 75 min): tests that run in real seconds shrink it.
    think: float = 1.0

    def __post_init__(self) -> None:
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}")
        self._cache: OrderedDict[int, dict[int, list[Row]]] = OrderedDict()
        self._dated: OrderedDict[int, list[Row]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def selection_lag(self) -> int:
        """How long after its date a row may be selected: rows dated in `[a, b]` are all
        selected in `[a, b + selection_lag]`."""
        # A conversation closes after its last row, which is at most its span after any other.
        return self.span + math.ceil(self.close_delay) if self.select_by == "close" else 0

    @property
    def span(self) -> int:
        """The longest a conversation lasts, first message to last."""
        return math.ceil(SESSION_SPAN * self.think)

    @property
    def reach(self) -> int:
        """How long after its session's start a row may be dated."""
        return self.span + math.ceil(RETURN_AFTER[1] * self.think)

    def minute(self, minute: int) -> list[Row]:
        """All rows dated in the minute starting at epoch second `minute` (a multiple of 60),
        in date order: of the sessions started in it or in the `reach` before it."""

        def dated() -> list[Row]:
            rows: list[Row] = []
            for start in range(minute - (self.reach // 60 + 1) * 60, minute + 60, 60):
                rows.extend(self._started(start).get(minute, ()))
            return sorted(rows, key=lambda r: r.date)

        return _cached(self._dated, minute, dated, self._lock)

    def forget_before(self, second: int) -> None:
        """Drop the cached rows no request from `second` on needs: long runs that move
        forward (benchmarks) keep memory flat; requests before it regenerate them."""
        with self._lock:
            _trim(self._dated, second)
            _trim(self._cache, second - self.reach - 60)

    def _started(self, minute: int) -> dict[int, list[Row]]:
        """The rows of the sessions started in a minute, by the minute they are dated in."""

        def generated() -> dict[int, list[Row]]:
            rows: dict[int, list[Row]] = {}
            for row in self._generate(minute):
                rows.setdefault(row.date - row.date % 60, []).append(row)
            return rows

        return _cached(self._cache, minute, generated, self._lock)

    def _generate(self, minute: int) -> list[Row]:
        if (self.start is not None and minute + self.reach + 60 <= self.start) or (
            self.stop is not None and minute >= self.stop
        ):
            return []  # no row of a session started then can be kept
        rng = random.Random(f"{self.seed}:{minute}")
        rate = self.rate_per_minute
        if self.daily_curve:
            rate *= _DAY_CURVE[datetime.fromtimestamp(minute, self.zone).hour]
        rows: list[Row] = []
        # Sessions average 5.6 messages: the rate stays one of rows.
        regulars = iter(rng.sample(range(REGULARS), REGULARS))
        for _ in range(_poisson(rng, rate / 5.6)):
            rows.extend(self._session(rng, minute, regulars))
        lo = self.start if self.start is not None else -math.inf
        hi = self.stop if self.stop is not None else math.inf
        return [r for r in rows if lo <= r.date < hi]

    def _session(self, rng: random.Random, minute: int, regulars: Iterator[int]) -> list[Row]:
        """A conversation: turns with think time between them, ending in a transfer, a goodbye
        or silence after a question; now and then a message after the timeout."""
        session_id = str(rng.randrange(10**9, 10**10))
        channel = rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]
        rp = rng.choice(ROUTING_POINTS)
        name = rng.choice(FIRST_NAMES)
        customer_id = _customer(rng, self.seed, _cycle(minute, self.think), regulars)
        phone = "57" + str(int(customer_id) % 509999999 + 3000000000)
        by_phone = rng.random() < 0.1  # no customer_id: known by phone
        conn_id = str(rng.randrange(10**6, 10**7)) if channel.startswith("whatsapp") else "0"
        turns = rng.choice((1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 10, 12, 16))
        ending = rng.choices(("transfer", "goodbye", "silence"), weights=(30, 50, 20))[0]
        dates = [minute + rng.randrange(60)]
        for _ in range(turns - 1):
            dates.append(dates[-1] + max(1, round(rng.choice(THINK) * self.think)))
        answers = [_reply(rng) for _ in range(turns - 1)]
        if ending == "transfer":
            answers.append(TRANSFER)
        elif ending == "goodbye":
            answers.append(rng.choice(GOODBYES))
        else:
            answers.append(rng.choice((*QUESTIONS, *FALLBACKS)))
        if rng.random() < 0.03:  # the customer writes again after Wolkvox's timeout
            dates.append(dates[-1] + max(1, round(rng.randrange(*RETURN_AFTER) * self.think)))
            answers.append(QUESTIONS[0])
        selected = [-1] * len(dates)
        if self.select_by == "close":
            selected = self._closes(session_id, dates, turns)
        rows = []
        for date, answer, chosen in zip(dates, answers, selected, strict=True):
            record: dict[str, object] = {
                "session_id": session_id,
                "channel": channel,
                "rp_id": rp,
                "date": datetime.fromtimestamp(date, self.zone).strftime("%Y-%m-%d %H:%M:%S"),
                "customer_name": f"{name} {customer_id[-4:]}",
                "customer_email": f"{name.lower()}.{customer_id[-6:]}@example.com",
                "customer_phone": phone,
                "customer_query": rng.choice(QUERIES),
                "routing_answer": answer,
                "customer_id": "" if by_phone else customer_id,
                "conn_id": conn_id,
            }
            delay = rng.uniform(0, 1.0)
            if rng.random() < self.late_fraction:
                delay = rng.uniform(0, self.late_max)
            rows.append(Row(date, date + delay, record, chosen))
            if rng.random() < self.duplicate_fraction:
                rows.append(Row(date, date + delay, dict(record), chosen))
        return rows

    def _closes(self, session_id: str, dates: list[int], turns: int) -> list[int]:
        """When each row is selected by close time: the conversation's rows when it closed,
        a message after its timeout when that one closed."""
        # Its own generator, so that the rows themselves are those of "date" mode.
        draw = random.Random(f"{self.seed}:close:{session_id}")
        lo = self.start if self.start is not None else -math.inf
        hi = self.stop if self.stop is not None else math.inf
        # It closes after its last row that is kept (traffic has no rows outside start/stop).
        kept = [d for d in dates[:turns] if lo <= d < hi]
        closed = max(kept, default=dates[0]) + int(draw.uniform(0, self.close_delay))
        later = [d + int(draw.uniform(0, self.close_delay)) for d in dates[turns:]]
        return [closed] * turns + later

    @property
    def quiet_after(self) -> int:
        """For traffic with a `stop`: no request range from here on selects a row."""
        assert self.stop is not None
        return self.stop + (math.ceil(self.close_delay) if self.select_by == "close" else 0)

    def all_rows(self) -> list[Row]:
        """Every row of traffic with a `start` and a `stop`, in date order."""
        assert self.start is not None
        return self.rows(self.start, self.quiet_after - 1)

    def rows(self, first: int, last: int, now: float | None = None) -> list[Row]:
        """Rows selected in the inclusive range `[first, last]` (dated in it, unless selected by
        close time), published by `now` if given; in date order."""
        out: list[Row] = []
        earliest = first - self.selection_lag
        if self.start is not None:  # no traffic is dated before start, nor at or after stop
            earliest = max(earliest, self.start - 60)
        last_minute = min(last, self.stop) if self.stop is not None else last
        for minute in range(earliest - earliest % 60, last_minute + 1, 60):
            for row in self.minute(minute):
                if not first <= row.selected <= last:
                    continue
                if now is None or (row.published <= now and row.selected <= now):
                    out.append(row)
        if self.selection_lag:
            out.sort(key=lambda r: r.date)
        return out

    def rows_by_wall(self, ini: str, end: str, now: float | None = None) -> list[Row]:
        """Rows whose selection time, as `YYYYmmddHHiiss` wall time, lies in `[ini, end]` (both
        valid request dates, in order), published by `now` if given; in date order."""
        # Every second that reads as a wall time in [ini, end] lies between the earliest
        # occurrence of `ini` and the latest of `end`; outside a fall-back, exactly those.
        earliest = _wall_epoch(ini, self.zone, fold=0)
        latest = _wall_epoch(end, self.zone, fold=1)
        zone = self.zone
        return [
            r
            for r in self.rows(earliest, latest, now)
            if ini <= datetime.fromtimestamp(r.selected, zone).strftime("%Y%m%d%H%M%S") <= end
        ]

    def truth(self, first: int, last: int) -> Counter[tuple[str, str, str]]:
        """Ground truth: rows per (channel, rp_id, routing_answer) selected in `[first, last]`."""
        return Counter(
            (str(r.record["channel"]), str(r.record["rp_id"]), str(r.record["routing_answer"]))
            for r in self.rows(first, last)
        )


# The bucket bounds, written again here: the ground truth does not borrow the exporter's.
_TURNS = (1, 2, 3, 5, 8, 13, 21, 34)
_SECONDS = (30, 60, 120, 300, 600, 1200, 1800, 3600)


@dataclass
class Talks:
    """Ground truth of the conversation figures, named like the exporter's counts."""

    sessions_ended: Counter[tuple[str, str]] = field(default_factory=Counter)
    session_turns: Counter[tuple[str, int]] = field(default_factory=Counter)
    session_turns_sum: Counter[str] = field(default_factory=Counter)
    session_duration: Counter[tuple[str, int]] = field(default_factory=Counter)
    session_duration_sum: Counter[str] = field(default_factory=Counter)
    session_time_to_transfer: Counter[tuple[str, int]] = field(default_factory=Counter)
    session_time_to_transfer_sum: Counter[str] = field(default_factory=Counter)
    sessions_recontact: Counter[tuple[str, str]] = field(default_factory=Counter)
    sessions_with_fallback: Counter[str] = field(default_factory=Counter)
    session_rows_after_end: Counter[str] = field(default_factory=Counter)


def _bucket(bounds: tuple[int, ...], value: int) -> int:
    return next((i for i, b in enumerate(bounds) if value <= b), len(bounds))


def conversation_truth(
    rows: list[Row],
    timeout: float,
    recontact_window: float,
    awaiting: tuple[str, ...] = (
        "question",
        "fallback",
    ),
) -> Talks:
    """Every conversation figure of these rows (all of a session's rows among them), by the
    definitions of the README: a session's rows up to its first gap longer than `timeout`
    (later ones come after its end); its result, turns, duration, time to transfer, fallback;
    a re-contact when its customer's latest earlier session ended at most `recontact_window`
    before it began, labelled with that session's result."""
    by_session: dict[str, list[Row]] = {}
    for r in rows:
        sid = r.record["session_id"]
        if sid not in (None, ""):
            by_session.setdefault(str(sid), []).append(r)
    talks = Talks()
    ended = [_follow(mine, timeout, awaiting, talks) for mine in by_session.values()]
    latest: dict[str, tuple[int, str]] = {}  # customer -> last row and result of the latest
    for first, last, who, channel, result in sorted(ended, key=lambda e: (e[1], e[0])):
        if not who:
            continue
        earlier = latest.get(who)
        if earlier is not None and earlier[0] <= first and first - earlier[0] <= recontact_window:
            talks.sessions_recontact[(channel, earlier[1])] += 1
        if earlier is None or last >= earlier[0]:
            latest[who] = (last, result)
    return talks


def _follow(
    mine: list[Row], timeout: float, awaiting: tuple[str, ...], talks: Talks
) -> tuple[int, int, str, str, str]:
    """One session's figures into `talks`; returns (first, last, customer, channel, result)."""
    mine.sort(key=lambda r: r.date)
    cut = next(
        (i for i in range(1, len(mine)) if mine[i].date - mine[i - 1].date > timeout),
        len(mine),
    )
    for r in mine[cut:]:
        talks.session_rows_after_end[str(r.record["channel"])] += 1
    mine = mine[:cut]
    channel = str(mine[0].record["channel"])
    kinds = [outcome_of(str(r.record["routing_answer"])) for r in mine]
    transfers = [r.date for r, k in zip(mine, kinds, strict=True) if k == "transferred"]
    last = mine[-1].date
    if transfers:
        result = "transferred"
    elif all(k in awaiting for r, k in zip(mine, kinds, strict=True) if r.date == last):
        result = "abandoned"
    else:
        result = "contained"
    first = mine[0].date
    talks.sessions_ended[(channel, result)] += 1
    talks.session_turns[(channel, _bucket(_TURNS, len(mine)))] += 1
    talks.session_turns_sum[channel] += len(mine)
    talks.session_duration[(channel, _bucket(_SECONDS, last - first))] += 1
    talks.session_duration_sum[channel] += last - first
    if transfers:
        talks.session_time_to_transfer[(channel, _bucket(_SECONDS, transfers[0] - first))] += 1
        talks.session_time_to_transfer_sum[channel] += transfers[0] - first
    if "fallback" in kinds:
        talks.sessions_with_fallback[channel] += 1
    who = next((w for r in mine if (w := _who(r.record))), "")
    return first, last, who, channel, result


def _who(record: Mapping[str, object]) -> str:
    for field_name in ("customer_id", "customer_phone", "customer_email"):
        value = record.get(field_name)
        if value not in (None, "", 0):
            return str(value)
    return ""


_T = TypeVar("_T")


def _cycle(minute: int, think: float) -> int:
    """Which regulars a minute draws from: those of the same minute of the hour (of the same
    minute of a shorter cycle when `think` shrinks conversations), so that one regular's
    sessions start a cycle apart, after the earlier one has surely ended."""
    return minute // 60 % max(2, round(60 * think))


def _trim(cache: OrderedDict[int, _T], floor: int) -> None:
    for minute in [m for m in cache if m < floor]:
        del cache[minute]


def _cached(
    cache: OrderedDict[int, _T], key: int, make: Callable[[], _T], lock: threading.Lock
) -> _T:
    """`make()` remembered under `key`, the 2,000 most recently used kept."""
    with lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
    value = make()
    with lock:
        cache[key] = value
        while len(cache) > 2000:
            cache.popitem(last=False)
    return value


def _customer(rng: random.Random, seed: int, slot: int, regulars: Iterator[int]) -> str:
    """A new customer, or (three in ten) a regular of this minute's `slot`."""
    if rng.random() < 0.3:
        regular = next(regulars, None)
        if regular is not None:
            who = random.Random(f"{seed}:regular:{slot}:{regular}")
            return str(who.randrange(10**7, 10**10))
    return str(rng.randrange(10**7, 10**10))


def _reply(rng: random.Random) -> str:
    x = rng.random()
    if x < 0.1:
        return f"MaskedText: {rng.randrange(10**5, 10**6)}"
    if x < 0.13:
        return ""
    if x < 0.23:
        return rng.choice(FALLBACKS)
    if x < 0.7:
        return rng.choice(QUESTIONS)
    return rng.choice(STATEMENTS)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


@dataclass
class Faults:
    """Rates (0..1, per request) of the ways the real API misbehaves, for resilience tests."""

    KINDS: ClassVar[tuple[str, ...]] = (
        "server_error",
        "error_envelope",
        "truncated",
        "hang",
        "data_null",
        "busy",
        "maintenance",
        "quota",
    )

    server_error: float = 0.0  # HTTP 500 with an HTML page
    error_envelope: float = 0.0  # HTTP 200 whose envelope says code 500
    truncated: float = 0.0  # HTTP 200 with the JSON cut short
    hang: float = 0.0  # answers only after `hang_seconds` (past the client's timeout)
    data_null: float = 0.0  # code 200 and "N records were found", but data null
    busy: float = 0.0  # HTTP 503 with Retry-After
    maintenance: float = 0.0  # HTTP 403 with no message, as during backups
    quota: float = 0.0  # HTTP 403 TOKEN LIMIT EXCEEDED
    hang_seconds: float = 5.0
    retry_after: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        """Pick the fault for one request, or None for a faithful answer."""
        with self._lock:
            x = self._rng.random()
        for kind in self.KINDS:
            rate = float(getattr(self, kind))
            if x < rate:
                return kind
            x -= rate
        return None


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _json_reply(status: int, payload: Mapping[str, object]) -> Reply:
    return Reply(status, json.dumps(payload, ensure_ascii=False).encode())


def _error(status: int, message: str) -> Reply:
    return _json_reply(
        status, {"code": str(status), "error": message, "msg": message, "data": None}
    )


@dataclass
class Stats:
    requests: int = 0
    violations: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    inverted: int = 0  # requests whose date_end came before their date_ini (refused)
    by_token: Counter[str] = field(default_factory=Counter)  # requests per token, valid or not
    faults: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)  # `wolkvox_server` headers received


class Simulator:
    """The API state: tenants' traffic, valid tokens, requests in flight, and what happened."""

    def __init__(
        self,
        tenants: dict[str, Traffic],
        tokens: set[str],
        *,
        cap: int = 6000,
        cap_mode: str = "truncate",
        latency: float = 0.02,
        max_days: int = 31,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        token_limit: int = 100_000,
        quota_zone: ZoneInfo | None = None,
    ) -> None:
        self.tenants = tenants
        self.tokens = tokens
        self.cap = cap
        self.cap_mode = cap_mode
        self.latency = latency
        self.max_days = max_days
        self.clock = clock
        self.faults = faults or Faults()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        # Daily quota per token, as Wolkvox counts it: every authenticated call, token_info
        # included, uses one; past the limit the API answers TOKEN LIMIT EXCEEDED until the
        # next local day.
        self.token_limit = token_limit
        self.quota_zone = quota_zone or ZoneInfo("America/Bogota")
        self.usage: Counter[tuple[str, str]] = Counter()  # (token, local day) -> calls

    def _today(self) -> str:
        """The local day the quota counts in: it resets at the quota zone's midnight."""
        return datetime.fromtimestamp(self.clock(), self.quota_zone).strftime("%Y-%m-%d")

    def _spend(self, token: str) -> bool:
        """Count one call against the token's daily quota; False if the quota is used up."""
        day = self._today()
        with self._lock:
            if self.usage[(token, day)] >= self.token_limit:
                return False
            self.usage[(token, day)] += 1
            return True

    def used_today(self, token: str) -> int:
        day = self._today()
        with self._lock:
            return self.usage[(token, day)]

    def token_info(self, params: dict[str, list[str]], token: str | None) -> Reply:
        """information.php?api=token_info: the token's daily quota, all values as strings."""
        if not token:
            return _error(401, "PLEASE ENTER THE WOLKVOX-TOKEN")
        if token not in self.tokens:
            return _error(403, "PLEASE VALIDATE TOKEN")
        if params.get("api") != ["token_info"]:
            return _error(400, "THE API YOU WANT TO CONSULT DOES NOT EXIST")
        if not self._spend(token):
            return _error(403, "TOKEN LIMIT EXCEEDED")
        used = self.used_today(token)
        data = {
            "description": "simulated token",
            "token_limit": str(self.token_limit),
            "token_use_today": str(used),
            "all_token_today": str(used),
            "available_consumption_options": str(self.token_limit - used),
        }
        # The vendor's documented sample: `data` is a list of one object of strings.
        return _json_reply(
            200, {"code": "200", "error": None, "msg": " 1 records were found", "data": [data]}
        )

    def answer(self, tenant: str, params: dict[str, list[str]], token: str | None) -> Reply:
        """The reply to one request whose token is already counted as in flight."""
        if not token:
            return _error(401, "PLEASE ENTER THE WOLKVOX-TOKEN")
        if token not in self.tokens:
            return _error(403, "PLEASE VALIDATE TOKEN")
        traffic = self.tenants.get(tenant)
        if params.get("api") != ["diagram_9"] or traffic is None:
            return _error(400, "THE API YOU WANT TO CONSULT DOES NOT EXIST")
        bounds = self._bounds(params, traffic)
        if isinstance(bounds, Reply):
            return bounds
        if not self._spend(token):
            return _error(403, "TOKEN LIMIT EXCEEDED")
        fault = self.faults.draw()
        if fault is not None:
            with self._lock:
                self.stats.faults[fault] += 1
        refusal = _FAULT_REPLIES.get(fault or "")
        if refusal is not None:
            return refusal(self.faults)
        reply = self._rows_reply(traffic, *bounds, data_null=fault == "data_null")
        if fault == "truncated":
            reply.body = reply.body[: len(reply.body) // 2]
        if fault == "hang":
            reply.delay = self.faults.hang_seconds
        return reply

    def _bounds(
        self, params: dict[str, list[str]], traffic: Traffic
    ) -> tuple[int, int, str, str] | Reply:
        """A request's range, as epochs and as the wall-time texts it was sent as; or the
        refusal of a missing, malformed, inverted or too long one."""
        first = _strict_date(params.get("date_ini"), traffic.zone)
        last = _strict_date(params.get("date_end"), traffic.zone)
        if first is None or last is None:
            return _error(400, "SOME PARAMETERS ARE REQUIRED")
        ini, end = params["date_ini"][0], params["date_end"][0]
        if ini > end or first > last:
            # What an API comparing dates most likely says of a range that ends before it
            # starts; counted, since the exporter must never send one.
            with self._lock:
                self.stats.inverted += 1
            return _error(400, "SOME PARAMETERS ARE REQUIRED")
        if last - first > self.max_days * 86400:
            return _error(400, "THE DATE RANGE EXCEEDS THE ALLOWED LIMIT")
        return first, last, ini, end

    def _rows_reply(
        self, traffic: Traffic, first: int, last: int, ini: str, end: str, data_null: bool
    ) -> Reply:
        if traffic.wall_time:
            rows = traffic.rows_by_wall(ini, end, now=self.clock())
        else:
            rows = traffic.rows(first, last, now=self.clock())
        if not rows:
            # What the live API says for an empty range, though the dates are fine.
            return _json_reply(
                404, {"code": "404", "error": None, "msg": "Validate dates entered", "data": []}
            )
        if len(rows) > self.cap:
            if self.cap_mode == "error":
                return _error(
                    400, f"IF YOUR QUERY EXCEEDS {self.cap} RECORDS, REDUCE THE DATE RANGE"
                )
            rows = rows[: self.cap]
        msg = f" {len(rows)} records were found"
        if data_null:
            return _json_reply(200, {"code": "200", "error": None, "msg": msg, "data": None})
        # What json.dumps writes for the whole payload, from rows encoded once.
        head = json.dumps({"code": "200", "error": None, "msg": msg}, ensure_ascii=False)
        data = b", ".join(r.body for r in rows)
        return Reply(200, head[:-1].encode() + b', "data": [' + data + b"]}")

    def enter(self, token: str | None) -> bool:
        """Mark a request with this token in flight; False if one already is (a violation)."""
        if not token:
            return True
        with self._lock:
            self.stats.requests += 1
            self.stats.by_token[token] += 1
            if self._in_flight[token] > 0:
                self.stats.violations += 1
                self._in_flight[token] += 1
                return False
            self._in_flight[token] += 1
            return True

    def leave(self, token: str | None, status: int) -> None:
        with self._lock:
            if token:
                self._in_flight[token] -= 1
            self.stats.by_status[status] += 1


# The faults that replace the answer whole, as the real API's failures look.
_FAULT_REPLIES: dict[str, Callable[[Faults], Reply]] = {
    "server_error": lambda _: Reply(
        500, b"<html><body><h1>500 Internal Server Error</h1></body></html>"
    ),
    "error_envelope": lambda _: _json_reply(
        200, {"code": "500", "error": "INTERNAL ERROR", "msg": "", "data": None}
    ),
    "busy": lambda faults: Reply(503, b"", {"Retry-After": str(faults.retry_after)}),
    "maintenance": lambda _: Reply(403, b""),
    "quota": lambda _: _error(403, "TOKEN LIMIT EXCEEDED"),
}


def _strict_date(values: list[str] | None, zone: ZoneInfo) -> int | None:
    if not values or len(values) != 1:
        return None
    text = values[0]
    if len(text) != 14 or not text.isdigit() or not text.isascii():
        return None
    try:
        return _wall_epoch(text, zone, fold=0)
    except ValueError:
        return None


def _wall_epoch(text: str, zone: ZoneInfo, fold: int) -> int:
    """A `YYYYmmddHHiiss` wall time as epoch seconds: its earlier occurrence (fold 0) or its
    later one (fold 1) where clocks went back."""
    wall = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=zone, fold=fold)
    return int(wall.timestamp())


class _Handler(BaseHTTPRequestHandler):
    sim: ClassVar[Simulator]
    timeout = 30  # a kept-alive connection idle this long is closed, as web servers do
    # Keep-alive, as the vendor's web servers answer: every reply carries its Content-Length.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/__sim/stats":
            stats = self.sim.stats
            body = {
                "requests": stats.requests,
                "violations": stats.violations,
                "by_status": {str(k): v for k, v in stats.by_status.items()},
                "faults": dict(stats.faults),
                "servers": dict(stats.servers),
            }
            self._send(_json_reply(200, body))
            return
        tenant, _sep, rest = url.path.lstrip("/").partition("/")
        if rest not in ("api/v2/reports_manager.php", "api/v2/information.php"):
            tenant, rest = "default", url.path.lstrip("/")
        if rest not in ("api/v2/reports_manager.php", "api/v2/information.php"):
            # A path the API does not serve gets the web server's page, as a wrong base_url would.
            page = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"
            self._send(Reply(404, page, {"Content-Type": "text/html"}))
            return
        token = self.headers.get("wolkvox-token")
        server = self.headers.get("wolkvox_server")
        if server is not None:
            with self.sim._lock:
                self.sim.stats.servers[server] += 1
        reply = Reply(500, b"")
        alone = self.sim.enter(token)
        try:
            time.sleep(self.sim.latency)
            if not alone:
                reply = _error(403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)")
            else:
                params = parse_qs(url.query)
                if rest == "api/v2/information.php":
                    reply = self.sim.token_info(params, token)
                else:
                    reply = self.sim.answer(tenant, params, token)
                if reply.delay:
                    time.sleep(reply.delay)
        finally:
            # The token is free once the answer is ready, before it is sent: a client that has
            # read the whole answer may send its next request at once without it counting as
            # simultaneous.
            self.sim.leave(token, reply.status)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (it timed out); there is no one to answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, poll_interval: float = 0.5
) -> tuple[SimulatorServer, str]:
    """Serve the simulator in a background thread; returns the server and its base URL.
    `shutdown()` waits up to `poll_interval`: tests that start many simulators shorten it."""
    handler = type("SimHandler", (_Handler,), {"sim": sim})
    server = SimulatorServer((host, port), handler)
    thread = threading.Thread(
        target=server.serve_forever, args=(poll_interval,), name="simulator", daemon=True
    )
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host!s}:{bound_port}"
