"""Reading a poll's windows from the API in as few requests as the record cap allows.

Behind (after an outage, or at the first start), several windows go into one request, as many as
keep the answer under half the record cap at the traffic just read; a range that the traffic
says holds more than the cap is asked in parts sized under it rather than whole and then halved.
Each wasted answer costs a call of daily quota and the request spacing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.api import windowing
from exporter.api.records import Answer
from exporter.counting.tally import Ingested
from exporter.polling.ingest import Ingest
from exporter.settings.config import Polling

# Parts of a range sized from measured traffic aim at this share of the record cap: room for
# traffic that grows between the measurement and the request.
FILL = 0.9

log = logging.getLogger(__name__)

Count = Callable[[Answer, int, int, tuple[int, int]], None]


class Reader:
    """The request sizes of one operation, from the traffic it read last."""

    def __init__(self, polling: Polling, ingest: Ingest) -> None:
        self.polling = polling
        self.ingest = ingest
        self.interval = int(polling.interval)
        self.rate: float | None = None  # rows per second of the last range read; None: unknown

    def catchup_span(self, rows_per_window: float | None) -> int:
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

    def first_span(self, busiest: int | None, restarted: bool) -> int:
        """The windows of a poll's first request, from the busiest window still held; after a
        restart from state those windows also tell the traffic (none held: quiet)."""
        if self.rate is None and restarted:
            self.rate = (busiest or 0) / self.interval
        return self.catchup_span(busiest)

    def read(self, piece: windowing.Piece, count: Count) -> int:
        """Fetch one request range and hand each answer to `count`; return the rows received.
        Rows dated before the piece's windows (late, or selected by another time than their
        date) count in its first window, the one being filled now.

        With no traffic known yet (the first poll of an operation without state) the oldest
        third is read alone to measure it: a busy operation's first window then takes three
        requests, not seven; a quiet one's two. Parts that still come back at the cap are
        halved."""
        received = 0
        windows = (piece.window.start, piece.window.end - self.interval)
        cap = self.polling.max_records_per_request

        def on_answer(answer: Answer, lo: int, hi: int) -> None:
            nonlocal received
            received += answer.size
            count(answer, lo, hi, windows)

        first, last = piece.first, piece.last
        if self.rate is None and last - first >= 30:
            probe = first + (last - first) // 3
            self.ingest.fetch(first, probe, on_answer)
            self.rate = received / (probe - first + 1)
            first = probe  # the parts share their boundary second, as halves do
        expected = (self.rate or 0.0) * (last - first + 1)
        for lo, hi in windowing.parts(first, last, expected, cap * FILL):
            self.ingest.fetch(lo, hi, on_answer)
        self.rate = received / (piece.last - piece.first + 1)
        return received


def log_outside(operation: str, read: Ingested) -> None:
    """One line per poll for rows dated outside the ranges that returned them: expected
    if the API selects rows by another time than their date, a sign of a wrong `timezone`
    when they are dated after the range (see `check --connect`)."""
    if not read.outside:
        return
    log.log(
        logging.WARNING if read.after else logging.INFO,
        "counted rows dated outside the requested range",
        extra={
            "operation": operation,
            "rows": read.outside,
            "earliest_minutes_before": round(read.before / 60, 1),
            "latest_minutes_after": round(read.after / 60, 1),
        },
    )


def log_done(operation: str, windows: int, ranges: int, collected_until: int | None) -> None:
    """One line per poll that read windows: how many, in how many requests."""
    if windows:
        log.info(
            "poll done",
            extra={
                "operation": operation,
                "windows": windows,
                "ranges": ranges,  # one request each, unless split at the record cap
                "collected_until": collected_until,
            },
        )
