"""What an operation asks next and when: the windows of a poll, and the wait before the next.

The windows come from `api.windowing` (pure arithmetic on the cursor); this adds what a running
poller must say and remember about them: a span given up past `max_catchup` is logged ready for
`backfill`, and failed polls wait longer each time, as long as a `Retry-After` or a paused token
asks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from exporter.api import windowing
from exporter.api.client import TokenGate
from exporter.api.records import format_when
from exporter.settings.config import OperationSettings
from exporter.settings.durations import format_duration

log = logging.getLogger(__name__)


def plan(
    settings: OperationSettings, cursor: int | None, origin: int | None, now: float
) -> windowing.Plan:
    """The windows a poll at `now` reads; a span beyond max_catchup is given up, and said so."""
    polling = settings.polling
    planned = windowing.plan(
        cursor=cursor,
        origin=origin,
        now=now,
        interval=settings.interval,
        settle_delay=int(polling.settle_delay),
        lookback=settings.lookback,
        max_catchup=int(polling.max_catchup),
    )
    if planned.skipped:
        resume = planned.pieces[0].window.start
        log.warning(
            "cursor was further behind than max_catchup; rows dated in the skipped span are "
            "not counted (backfill them: wolkvox-exporter backfill --from FROM --to TO)",
            extra={
                "operation": settings.name,
                "skipped": format_duration(planned.skipped),
                "from": format_when(resume - planned.skipped, settings.zone),
                "to": format_when(resume, settings.zone),
            },
        )
    return planned


class Backoff:
    """Consecutive failures and the API's own `Retry-After`, turned into the next poll's time."""

    def __init__(self, settings: OperationSettings) -> None:
        self.polling = settings.polling
        self.interval = settings.interval
        self.failures = 0  # consecutive failed polls
        self.retry_after: float | None = None

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_after = None

    def failed(self) -> None:
        self.failures += 1

    def api_failed(self, retry_after: float | None, progressed: bool) -> None:
        """A poll the API failed; one that counted a range first shows an API that works, if
        flakily, so it does not back off further."""
        self.retry_after = retry_after
        if progressed:
            self.failures = 0
        self.failed()

    def next_attempt(self, now: float, paused_until: float | None) -> float:
        """The next window, later after repeated failures, a Retry-After or a paused token."""
        settle = int(self.polling.settle_delay)
        wake = windowing.next_poll_at(now, self.interval, settle)
        if self.failures > 1:
            backoff = min(self.interval * 2 ** (self.failures - 1), self.polling.max_backoff)
            wake = max(wake, now + backoff)
        if self.retry_after is not None:
            wake = max(wake, now + min(self.retry_after, self.polling.max_backoff))
        if paused_until is not None:
            wake = max(wake, paused_until)
        return wake


def pause_for_the_day(gate: TokenGate, token: str, now: float, settings: OperationSettings) -> None:
    """`TOKEN LIMIT EXCEEDED`: the daily quota, shared by every operation using the token, is
    spent until the operation's next local day."""
    until = next_local_midnight(now, settings.zone)
    gate.pause(token, until)
    log.error(
        "daily API quota exhausted; pausing this token until the next local day",
        extra={
            "operation": settings.name,
            "until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
        },
    )


def next_local_midnight(now: float, zone: ZoneInfo) -> float:
    """The start of the operation's next local day, when Wolkvox resets the daily quota."""
    local = datetime.fromtimestamp(now, zone)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).timestamp() + 60
