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
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter import windowing
from exporter.aggregation import LabelKey, Tally
from exporter.client import ApiError, Client, Outcome, TokenGate
from exporter.config import Labels, Operation, Polling, format_duration
from exporter.records import Answer

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True)
class Snapshot:
    """Everything the collector renders for one operation, copied at one instant."""

    name: str
    up: bool
    polled: bool
    last_success: float | None
    collected_until: int | None
    interactions: dict[LabelKey, int]
    last_window: dict[LabelKey, int]
    requests: dict[str, int]
    duration_buckets: tuple[int, ...]
    duration_sum: float
    received: int
    duplicates: int
    rejected: dict[str, int]
    overflow: dict[str, int]
    last_error: str


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


class Poller:
    def __init__(
        self,
        op: Operation,
        polling: Polling,
        label_config: Labels,
        gate: TokenGate,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.op = op
        self.name = op.name
        self.polling = polling
        self.interval = int(polling.interval)
        self.clock = clock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tally = Tally(op.zone, self.interval, label_config)
        self.cursor: int | None = None
        self.origin: int | None = None
        self._health = _Health()
        self.client = Client(
            url=op.url,
            token=op.secret(),
            zone=op.zone,
            gate=gate,
            observe=self._observe,
            connect_timeout=polling.connect_timeout,
            timeout=polling.timeout,
            retries=polling.retries,
            retry_backoff=polling.retry_backoff,
            stop=self.stop,
        )
        self._thread: threading.Thread | None = None

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
            log.warning(
                "cursor was further behind than max_catchup; skipping ahead",
                extra={"operation": self.name, "skipped": format_duration(plan.skipped)},
            )
        try:
            for piece in plan.pieces:
                self._fetch(piece.first, piece.last)
                self._advance(piece.window.end)
        except ApiError as exc:
            with self.lock:
                self._health.up = False
                self._health.polled = True
                self._health.last_error = str(exc)
            log.error(
                "poll failed; the cursor stays and the next poll catches up",
                extra={"operation": self.name, "outcome": str(exc.outcome), "error": str(exc)},
            )
            return False
        with self.lock:
            if plan.pieces:
                last = plan.pieces[-1].window
                keep_from = last.start - int(self.polling.lookback) - 2 * self.interval
                self.tally.publish(last.start, now, keep_from)
            self._health.up = True
            self._health.polled = True
            self._health.last_success = now
            self._health.last_error = ""
        if plan.pieces:
            log.info(
                "poll done",
                extra={
                    "operation": self.name,
                    "windows": len(plan.pieces),
                    "collected_until": self.cursor,
                },
            )
        return True

    def _fetch(self, first: int, last: int) -> None:
        """Fetch and count one request range, halving it while the API says it holds too much."""
        cap = self.polling.max_records_per_request
        answer: Answer | None
        try:
            answer = self.client.fetch(first, last)
            full = len(answer.records) + sum(answer.rejected.values()) >= cap
        except ApiError as exc:
            if exc.outcome is not Outcome.TOO_MANY_RECORDS:
                raise
            answer, full = None, True
        if full:
            halves = windowing.split(first, last)
            if halves is not None:
                for lo, hi in halves:
                    self._fetch(lo, hi)
                return
            if answer is None:
                raise ApiError(Outcome.TOO_MANY_RECORDS, "even a one-second range is too large")
            log.warning(
                "a one-second range holds the record cap; rows beyond it may be missing",
                extra={"operation": self.name, "cap": cap},
            )
        assert answer is not None
        with self.lock:
            self.tally.ingest(answer, first, last)

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
                with self.lock:
                    self._health.up = False
            wake = windowing.next_poll_at(
                self.clock(), self.interval, int(self.polling.settle_delay)
            )
            self.stop.wait(max(0.0, wake - self.clock()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.close()

    def snapshot(self) -> Snapshot:
        with self.lock:
            h = self._health
            t = self.tally
            return Snapshot(
                name=self.name,
                up=h.up,
                polled=h.polled,
                last_success=h.last_success,
                collected_until=self.cursor,
                interactions=dict(t.interactions),
                last_window=dict(t.last_window),
                requests=dict(h.requests),
                duration_buckets=(*h.buckets, h.duration_count),
                duration_sum=h.duration_sum,
                received=t.received,
                duplicates=t.duplicates,
                rejected=dict(t.rejected),
                overflow=dict(t.overflow),
                last_error=h.last_error,
            )

    @property
    def ready(self) -> bool:
        with self.lock:
            return self._health.last_success is not None
