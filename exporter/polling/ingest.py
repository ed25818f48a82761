"""The ingest step of one operation: fetch a range, count it, publish a window, forget the past.

The live poller and backfill both run it, so a row takes the same way into the counters whether
it is read now or a month later, and the two rules that decide what is remembered (how long a
published window stays open to late rows, how long a row stays recognisable) are written once.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.api import windowing
from exporter.api.client import Client, fetch_within_cap
from exporter.api.records import Answer
from exporter.counting.tally import Ingested, Tally
from exporter.settings.config import OperationSettings

OnAnswer = Callable[[Answer, int, int], None]


class Ingest:
    """One operation's tally fed from its client. Not thread-safe: callers that share the
    tally with scrapes hold their own lock around `count`, `publish` and `forget`."""

    def __init__(self, settings: OperationSettings, tally: Tally, client: Client) -> None:
        self.settings = settings
        self.tally = tally
        self.client = client
        self.name = settings.name
        self.interval = settings.interval
        self.lookback = settings.lookback
        self.cap = settings.polling.max_records_per_request

    def fetch(self, first: int, last: int, on_answer: OnAnswer) -> None:
        """Every answer of the inclusive range `[first, last]`, split while at the record cap."""
        fetch_within_cap(self.client, first, last, self.cap, on_answer, self.name)

    def count(
        self, answer: Answer, first: int, last: int, windows: tuple[int, int] | None = None
    ) -> Ingested:
        """Count one answer to the range `[first, last]`, into the open `windows`."""
        return self.tally.ingest(answer, first, last, windows)

    def publish(self, window_start: int, now: float) -> None:
        """Show the window starting at `window_start` as the last complete one. Windows older
        than a look-back and two intervals before it can no longer receive a row in their own
        right (a late row counts in the first open window), so their books are closed."""
        keep_from = window_start - self.lookback - 2 * self.interval
        self.tally.publish(window_start, now, keep_from)

    def forget(self, cursor: int, origin: int) -> None:
        """Everything collected before `cursor`: rows dated before the re-read horizon can never
        come back, so their fingerprints (and the sessions past their horizon) may go."""
        self.tally.forget_before(windowing.retention_floor(cursor, origin, self.lookback))
