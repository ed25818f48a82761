"""The background loop of one operation: plan windows, read them, count them, advance the cursor.

The cursor only moves past a window once every row of it has been counted, so a failure anywhere
(a timeout on the second half of a split window, say) leaves the cursor where it was and the next
poll reads the window again; rows already counted in the failed attempt are recognised by the
dedupe store and not counted twice.

Its rooms: `planning` (which windows, when next), `reading` (request sizes), `ingest` (the step
shared with backfill), `health` (up, requests, quota), and the state store behind `commit`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from exporter.api import windowing
from exporter.api.client import ApiError, Client, Outcome, TokenGate
from exporter.api.records import Answer
from exporter.counting.counts import Counts, TallyState
from exporter.counting.tally import Ingested, Tally
from exporter.polling import planning
from exporter.polling.health import Health, Quota
from exporter.polling.ingest import Ingest
from exporter.polling.reading import Reader, log_done, log_outside
from exporter.polling.saving import Saver
from exporter.polling.snapshot import Snapshot
from exporter.polling.worker import Worker
from exporter.settings.config import OperationSettings
from exporter.state.store import OperationState, StateStore

log = logging.getLogger(__name__)

COMMIT_EVERY = 10.0  # seconds between saves during a long catch-up


class _Stopped(Exception):
    """The poller is stopping: the rest of the poll is left to the next start."""


class Poller:
    def __init__(
        self,
        settings: OperationSettings,
        gate: TokenGate,
        clock: Callable[[], float] = time.time,
        store: StateStore | None = None,
        saved: OperationState | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.gate = gate
        self.store = store
        self.clock = clock
        self.worker = Worker(self.name, self.poll_once, self.next_attempt, clock, self._crashed)
        self.lock = threading.Lock()  # the tally and health, between this thread and scrapes
        self.tally = Tally(settings, store.secret() if store is not None else None)
        self.cursor: int | None = None
        self.origin: int | None = None
        self.health = Health()
        self.backoff = planning.Backoff(settings)
        # The client abandons its request in flight on `stop` and makes no new one after `wake`.
        self.client = Client.for_operation(
            settings, gate, self._observe, stop=self.worker.stop, ending=self.worker.wake
        )
        self.quota = Quota(self.client, settings.polling.token_info_interval, self.name)
        self.ingest = Ingest(settings, self.tally, self.client)
        self.reader = Reader(settings.polling, self.ingest)
        if saved is not None:
            self._restore(saved)
        self.saver = Saver(
            self.name, store, self.tally, self.lock, lambda t: self.export_state(False, t)
        )
        self._published = self._build_snapshot()
        self._committed_at = time.monotonic()

    def _restore(self, saved: OperationState) -> None:
        self.cursor = saved.cursor
        self.origin = saved.origin
        self.tally.restore(saved.tally)
        self.health.restore(saved.requests, saved.skipped_seconds, saved.last_skip)
        if saved.quota_paused_until is not None:
            self.gate.pause(self.client.token, saved.quota_paused_until)

    def export_state(
        self, sessions: bool = True, tally: TallyState | None = None
    ) -> OperationState:
        """What a restart needs; without `sessions`, the session store is left to `save`,
        which writes only what changed. `tally`, if given, stands for the tally's state."""
        paused = self.gate.paused_until(self.client.token, self.clock())
        with self.lock:
            return OperationState(
                cursor=self.cursor,
                origin=self.origin,
                requests=dict(self.health.requests),
                quota_paused_until=paused,
                skipped_seconds=self.health.skipped_seconds,
                last_skip=self.health.last_skip,
                tally=self.tally.export(sessions=sessions) if tally is None else tally,
            )

    def save(self) -> bool:
        """Save the whole state now (a retiring or stopping poller); whether it was saved."""
        return self.saver.whole()

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        with self.lock:
            self.health.observe(outcome, seconds)

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
            if not self.worker.ending:  # stopped is not failed: a successor goes on
                self._failed(exc, now, progressed=ranges > 0)
            return False
        finally:
            self.commit()
            log_outside(self.name, read)
        log_done(self.name, len(plan.pieces), ranges, self.cursor)
        return True

    def _plan(self, now: float) -> windowing.Plan:
        plan = planning.plan(self.settings, self.cursor, self.origin, now)
        self.origin = plan.origin
        if plan.skipped:
            with self.lock:
                self.health.skipped(plan.skipped, now)
            self._advance(plan.pieces[0].window.start)
        return plan

    def _read(self, pieces: Sequence[windowing.Piece], read: Ingested) -> Iterator[None]:
        """Fetch and count the pieces, several windows per request when behind; yields after
        each range counted. Raises _Stopped, between requests, once the poller is stopping."""
        pending = list(pieces)
        span = self.reader.first_span(self.tally.ledger.busiest_window(), self.cursor is not None)

        def count(answer: Answer, lo: int, hi: int, windows: tuple[int, int]) -> None:
            with self.lock:
                read.add(self.ingest.count(answer, lo, hi, windows))

        while pending:
            if self.worker.ending:
                raise _Stopped
            taken, pending = pending[:span], pending[span:]
            piece = windowing.merge(taken)
            received = self.reader.read(piece, count)
            self._advance(piece.window.end)
            span = self.reader.catchup_span(received / len(taken))
            if time.monotonic() - self._committed_at > COMMIT_EVERY:
                self.commit()  # a long catch-up shows progress and keeps it
            yield

    def _succeeded(self, pieces: Sequence[windowing.Piece], now: float) -> None:
        with self.lock:
            if pieces:
                self.ingest.publish(pieces[-1].window.start, now)
            self.health.succeeded(now)
        self.backoff.succeeded()
        self.quota.refresh(now)

    def _failed(self, exc: ApiError, now: float, progressed: bool) -> None:
        if exc.outcome is Outcome.QUOTA_EXCEEDED:
            planning.pause_for_the_day(self.gate, self.client.token, now, self.settings)
        else:
            log.error(
                "poll failed; the cursor stays and the next poll catches up",
                extra={"operation": self.name, "outcome": str(exc.outcome), "error": str(exc)},
            )
        self.backoff.api_failed(exc.retry_after, progressed)
        with self.lock:
            self.health.failed(str(exc))

    def _fail(self, error: str) -> None:
        self.backoff.failed()
        with self.lock:
            self.health.failed(error)

    def next_attempt(self, now: float) -> float:
        """When to poll next: the next window, later after repeated failures or a Retry-After."""
        return self.backoff.next_attempt(now, self.gate.paused_until(self.client.token, now))

    def _advance(self, end: int) -> None:
        assert self.origin is not None
        with self.lock:
            self.cursor = end
            self.ingest.forget(end, self.origin)

    def _crashed(self) -> None:
        self._fail("unexpected error; see the exporter log")
        self.commit()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop now, abandoning the request in flight (the process is exiting)."""
        self.worker.shutdown(timeout)
        self.client.close()

    def retired(self, timeout: float) -> bool:
        """Whether a retiring poller has ended; its client is closed once it has."""
        if done := self.worker.retired(timeout):
            self.client.close()
        return done

    def snapshot(self) -> Snapshot:
        """The last committed snapshot: what scrapes see, never ahead of the state file."""
        return self._published

    def commit(self) -> None:
        """Save the state, then let scrapes see it.

        Publishing only what is saved means a counter a scrape has seen is never lower after a
        crash and restart, which Prometheus would read as a counter reset. A poll that counted
        nothing (the tally's revision unchanged since the last commit) saves and publishes
        only where the poller stands: the counts already published are published again as
        they are, and the page renders only the health families again.
        """
        changed = self.saver.changed()
        self._published = self._build_snapshot(None if changed else self._published.counts)
        self._committed_at = time.monotonic()

    def _build_snapshot(self, counts: Counts | None = None) -> Snapshot:
        """The snapshot of the moment; `counts`, if given, are those already published."""
        paused = self.gate.paused_until(self.client.token, self.clock()) is not None
        with self.lock:
            counted = (
                self.tally.counts.copy() if counts is None else counts,
                self.tally.outcome_names,
            )
            return self.health.snapshot(self.name, *counted, self.cursor, self.quota, paused)

    @property
    def ready(self) -> bool:
        """Whether a successful poll has been published: /-/ready must not run ahead of what
        /metrics shows (the success is committed only after the quota read and the save)."""
        return self._published.last_success is not None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
