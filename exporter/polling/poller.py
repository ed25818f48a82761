"""The background loop of one operation: plan windows, fetch them, count them, advance the cursor.

The cursor only moves past a window once every row of it has been counted, so a failure anywhere
(a timeout on the second half of a split window, say) leaves the cursor where it was and the next
poll reads the window again; rows already counted in the failed attempt are recognised by the
dedupe store and not counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from exporter.api import windowing
from exporter.api.client import ApiError, Client, Outcome, TokenGate, fetch_within_cap
from exporter.api.records import Answer, format_when
from exporter.counting.tally import Ingested, Tally
from exporter.polling.snapshot import DURATION_BUCKETS, Snapshot
from exporter.settings.config import Kpis, Labels, Operation, Polling, format_duration
from exporter.state.store import OperationState, StateStore

log = logging.getLogger(__name__)

COMMIT_EVERY = 10.0  # seconds between saves during a long catch-up


@dataclass
class _Health:
    up: bool = False
    polled: bool = False
    last_success: float | None = None
    last_error: str = ""
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(map(str, Outcome), 0))
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_count: int = 0
    duration_sum: float = 0.0
    skipped_seconds: int = 0  # given up past max_catchup: a loss, so a counter and an alert
    last_skip: float | None = None


class _Stopped(Exception):
    """The poller is stopping: the rest of the poll is left to the next start."""


# Parts of a range sized from measured traffic aim at this share of the record cap: room for
# traffic that grows between the measurement and the request.
FILL = 0.9


class Poller:
    def __init__(
        self,
        op: Operation,
        polling: Polling,
        label_config: Labels,
        gate: TokenGate,
        clock: Callable[[], float] = time.time,
        store: StateStore | None = None,
        saved: OperationState | None = None,
        kpis: Kpis | None = None,
    ) -> None:
        self.op = op
        self.gate = gate
        self.store = store
        self.failures = 0  # consecutive failed polls, for the backoff
        self.retry_after: float | None = None
        self.rate: float | None = None  # rows per second of the last range read; None: unknown
        self.name = op.name
        self.polling = polling
        self.interval = int(polling.interval)
        self.clock = clock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tally = Tally(op.zone, self.interval, label_config, kpis)
        self.cursor: int | None = None
        self.origin: int | None = None
        self._health = _Health()
        self.client = Client.for_operation(op, polling, gate, self._observe, stop=self.stop)
        self._thread: threading.Thread | None = None
        self._quota_read: float | None = None
        self._quota: tuple[int | None, int | None] = (None, None)
        if saved is not None:
            self._restore(saved)
        self._published = self._build_snapshot()
        self._committed_at = time.monotonic()

    def _restore(self, saved: OperationState) -> None:
        self.cursor = saved.cursor
        self.origin = saved.origin
        self.tally.restore(saved.tally)
        for outcome, n in saved.requests.items():
            self._health.requests[outcome] = n
        self._health.skipped_seconds = saved.skipped_seconds
        self._health.last_skip = saved.last_skip
        if saved.quota_paused_until is not None:
            self.gate.pause(self.client.token, saved.quota_paused_until)

    def export_state(self, sessions: bool = True) -> OperationState:
        with self.lock:
            return self._export_locked(sessions)

    def _export_locked(self, sessions: bool) -> OperationState:
        return OperationState(
            cursor=self.cursor,
            origin=self.origin,
            requests=dict(self._health.requests),
            quota_paused_until=self.gate.paused_until(self.client.token, self.clock()),
            skipped_seconds=self._health.skipped_seconds,
            last_skip=self._health.last_skip,
            tally=self.tally.export(sessions=sessions),
        )

    def save(self) -> None:
        """Write the counters and the session changes since the last save; the changes stay
        noted until a save succeeds. Only this poller's thread counts into the tally, so
        nothing changes between taking the changes and marking them saved."""
        if self.store is None:
            return
        with self.lock:
            state = self._export_locked(sessions=False)
            changes = self.tally.sessions.pending()
        if self.store.save(self.name, state, changes):
            with self.lock:
                self.tally.sessions.saved()

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        with self.lock:
            h = self._health
            h.requests[str(outcome)] += 1
            h.duration_count += 1
            h.duration_sum += seconds
            for i, bound in enumerate(DURATION_BUCKETS):
                if seconds <= bound:
                    h.buckets[i] += 1

    def poll_once(self) -> bool:
        """Read every complete window since the cursor; return whether all of them were counted."""
        now = self.clock()
        paused = self.gate.paused_until(self.client.token, now)
        if paused is not None:
            self._fail(f"daily API quota exhausted; requests paused until {_iso(paused)}")
            self.commit()
            return False
        plan = self._plan(now)
        read = Ingested()  # this poll's answers, for one summary line
        ranges = 0
        try:
            for _ in self._read(plan.pieces, read):
                ranges += 1
            self._succeeded(plan.pieces, now)
        except _Stopped:
            return False
        except ApiError as exc:
            self._failed(exc, now, progressed=ranges > 0)
            return False
        finally:
            self.commit()
            self._log_outside(read)
        if plan.pieces:
            log.info(
                "poll done",
                extra={
                    "operation": self.name,
                    "windows": len(plan.pieces),
                    "ranges": ranges,  # one request each, unless split at the record cap
                    "collected_until": self.cursor,
                },
            )
        return True

    def _plan(self, now: float) -> windowing.Plan:
        """The windows this poll reads; a span beyond max_catchup is given up, and said so."""
        plan = windowing.plan(
            cursor=self.cursor,
            origin=self.origin,
            now=now,
            interval=self.interval,
            settle_delay=int(self.polling.settle_delay),
            lookback=int(self.polling.lookback),
            max_catchup=int(self.polling.max_catchup),
        )
        self.origin = plan.origin
        if plan.skipped:
            resume = plan.pieces[0].window.start
            log.warning(
                "cursor was further behind than max_catchup; rows dated in the skipped span are "
                "not counted (backfill them: wolkvox-exporter backfill --from FROM --to TO)",
                extra={
                    "operation": self.name,
                    "skipped": format_duration(plan.skipped),
                    "from": format_when(resume - plan.skipped, self.op.zone),
                    "to": format_when(resume, self.op.zone),
                },
            )
            with self.lock:
                self._health.skipped_seconds += plan.skipped
                self._health.last_skip = now
            self._advance(resume)
        return plan

    def _read(self, pieces: Sequence[windowing.Piece], read: Ingested) -> Iterator[None]:
        """Fetch and count the pieces, several windows per request when behind; yields after
        each range counted. Raises _Stopped, between requests, once the poller is stopping."""
        pending = list(pieces)
        busiest = self._busiest_recent_window()
        if self.rate is None and self.cursor is not None:
            # Restarted from state: the windows it kept tell the traffic (none: quiet).
            self.rate = (busiest or 0) / self.interval
        span = self._catchup_span(busiest)
        while pending:
            if self.stop.is_set():
                raise _Stopped
            taken, pending = pending[:span], pending[span:]
            piece = windowing.merge(taken)
            received = self._fetch(piece, read)
            self._advance(piece.window.end)
            span = self._catchup_span(received / len(taken))
            if time.monotonic() - self._committed_at > COMMIT_EVERY:
                self.commit()  # a long catch-up shows progress and keeps it
            yield

    def _succeeded(self, pieces: Sequence[windowing.Piece], now: float) -> None:
        with self.lock:
            if pieces:
                last = pieces[-1].window
                keep_from = last.start - int(self.polling.lookback) - 2 * self.interval
                self.tally.publish(last.start, now, keep_from)
            self._health.up = True
            self._health.polled = True
            self._health.last_success = now
            self._health.last_error = ""
        self.failures = 0
        self.retry_after = None
        self._read_quota(now)

    def _failed(self, exc: ApiError, now: float, progressed: bool) -> None:
        self.retry_after = exc.retry_after
        if exc.outcome is Outcome.QUOTA_EXCEEDED:
            until = _next_local_midnight(now, self.op.zone)
            self.gate.pause(self.client.token, until)
            log.error(
                "daily API quota exhausted; pausing this token until the next local day",
                extra={"operation": self.name, "until": _iso(until)},
            )
        if progressed:
            self.failures = 0  # the API works, if flakily: no need to back off further
        self._fail(str(exc), exc.outcome)

    def _catchup_span(self, rows_per_window: float | None) -> int:
        """How many windows the next request may cover when the poller is behind.

        Up to `catchup_span`, so that a day's catch-up is a few dozen requests rather than 288,
        while the windows at `rows_per_window` (the last request's, or at first the busiest
        recent window's) stay under half the record cap. An answer at the cap is halved and asked
        again, a request wasted; the other half leaves room for traffic that grows from one
        request to the next (an operation opening in the morning). Unknown traffic: one window.
        """
        most = int(self.polling.catchup_span) // self.interval
        if most <= 1 or rows_per_window is None:
            return 1
        budget = self.polling.max_records_per_request / 2
        return max(1, min(most, int(budget // max(1.0, rows_per_window))))

    def _busiest_recent_window(self) -> int | None:
        """Rows of the busiest window still held for the last-window gauge, if any."""
        return max((sum(c.values()) for c in self.tally.ledger.by_window.values()), default=None)

    def _read_quota(self, now: float) -> None:
        """Refresh the token's daily quota at most every token_info_interval; a failure here
        is logged and leaves the last values, it does not fail the poll."""
        every = self.polling.token_info_interval
        if not every or (self._quota_read is not None and now - self._quota_read < every):
            return
        self._quota_read = now
        try:
            info = self.client.token_info()
        except ApiError as exc:
            log.warning(
                "could not read the token's quota (token_info)",
                extra={"operation": self.name, "error": str(exc)},
            )
            return
        with self.lock:
            self._quota = (info.limit, info.used)

    def _fail(self, error: str, outcome: Outcome | None = None) -> None:
        self.failures += 1
        with self.lock:
            self._health.up = False
            self._health.polled = True
            self._health.last_error = error
        if outcome is not None and outcome is not Outcome.QUOTA_EXCEEDED:
            log.error(
                "poll failed; the cursor stays and the next poll catches up",
                extra={"operation": self.name, "outcome": str(outcome), "error": error},
            )

    def next_attempt(self, now: float) -> float:
        """When to poll next: the next window, later after repeated failures or a Retry-After."""
        settle = int(self.polling.settle_delay)
        wake = windowing.next_poll_at(now, self.interval, settle)
        if self.failures > 1:
            backoff = min(self.interval * 2 ** (self.failures - 1), self.polling.max_backoff)
            wake = max(wake, now + backoff)
        if self.retry_after is not None:
            wake = max(wake, now + min(self.retry_after, self.polling.max_backoff))
        paused = self.gate.paused_until(self.client.token, now)
        if paused is not None:
            wake = max(wake, paused)
        return wake

    def _fetch(self, piece: windowing.Piece, read: Ingested) -> int:
        """Fetch and count one request range; return the rows received. Rows dated before the
        piece's windows (late, or selected by another time than their date) count in its first
        window, the one being filled now.

        A range the last one's traffic says holds more than the record cap is asked in parts
        sized to stay under it, rather than whole and then halved (each wasted answer costs a
        call of quota and the request spacing). With no traffic known yet (the first poll of an
        operation without state) the oldest third is read alone to measure it: a busy
        operation's first window then takes three requests, not seven; a quiet one's two.
        Parts that still come back at the cap are halved."""
        received = 0
        windows = (piece.window.start, piece.window.end - self.interval)
        cap = self.polling.max_records_per_request

        def count(answer: Answer, lo: int, hi: int) -> None:
            nonlocal received
            received += answer.size
            with self.lock:
                read.add(self.tally.ingest(answer, lo, hi, windows))

        first, last = piece.first, piece.last
        if self.rate is None and last - first >= 30:
            probe = first + (last - first) // 3
            fetch_within_cap(self.client, first, probe, cap, count, self.name)
            self.rate = received / (probe - first + 1)
            first = probe  # the parts share their boundary second, as halves do
        expected = (self.rate or 0.0) * (last - first + 1)
        for lo, hi in windowing.parts(first, last, expected, cap * FILL):
            fetch_within_cap(self.client, lo, hi, cap, count, self.name)
        self.rate = received / (piece.last - piece.first + 1)
        return received

    def _log_outside(self, read: Ingested) -> None:
        """One line per poll for rows dated outside the ranges that returned them: expected
        if the API selects rows by another time than their date, a sign of a wrong `timezone`
        when they are dated after the range (see `check --connect`)."""
        if not read.outside:
            return
        log.log(
            logging.WARNING if read.after else logging.INFO,
            "counted rows dated outside the requested range",
            extra={
                "operation": self.name,
                "rows": read.outside,
                "earliest_minutes_before": round(read.before / 60, 1),
                "latest_minutes_after": round(read.after / 60, 1),
            },
        )

    def _advance(self, end: int) -> None:
        assert self.origin is not None
        with self.lock:
            self.cursor = end
            floor = windowing.retention_floor(end, self.origin, int(self.polling.lookback))
            self.tally.forget_before(floor)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug must not kill the loop and silently freeze the metrics
                log.exception("unexpected error in poll", extra={"operation": self.name})
                self._fail("unexpected error; see the exporter log")
                self.commit()
            now = self.clock()
            self.stop.wait(max(0.0, self.next_attempt(now) - now))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.close()

    def snapshot(self) -> Snapshot:
        """The last committed snapshot: what scrapes see, never ahead of the state file."""
        return self._published

    def commit(self) -> None:
        """Save the state, then let scrapes see it.

        Publishing only what is saved means a counter a scrape has seen is never lower after a
        crash and restart, which Prometheus would read as a counter reset.
        """
        self.save()
        self._published = self._build_snapshot()
        self._committed_at = time.monotonic()

    def _build_snapshot(self) -> Snapshot:
        with self.lock:
            h = self._health
            return Snapshot(
                self.name,
                self.tally.counts.copy(),
                self.tally.outcome_names,
                up=h.up,
                polled=h.polled,
                last_success=h.last_success,
                collected_until=self.cursor,
                requests=dict(h.requests),
                duration_buckets=(*h.buckets, h.duration_count),
                duration_sum=h.duration_sum,
                last_error=h.last_error,
                quota_exhausted=self.gate.paused_until(self.client.token, self.clock()) is not None,
                quota_limit=self._quota[0],
                quota_used=self._quota[1],
                skipped_seconds=h.skipped_seconds,
                last_skip=h.last_skip,
            )

    @property
    def ready(self) -> bool:
        """Whether a successful poll has been published: /-/ready must not run ahead of what
        /metrics shows (the success is committed only after the quota read and the save)."""
        return self._published.last_success is not None


def _next_local_midnight(now: float, zone: ZoneInfo) -> float:
    """The start of the operation's next local day, when Wolkvox resets the daily quota."""
    local = datetime.fromtimestamp(now, zone)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).timestamp() + 60


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
