"""How an operation's polling goes: the figures behind wolkvox_up, the request counters and
the latency histogram, kept apart from what was counted so that a failing API never touches the
counters and a healthy one never needs the tally to report itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from exporter.api.client import ApiError, Client, Outcome
from exporter.counting.counts import Counts
from exporter.polling.snapshot import DURATION_BUCKETS, Snapshot

log = logging.getLogger(__name__)


@dataclass
class Health:
    """Mutated by the poller's thread under the poller's lock; read for snapshots."""

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

    def observe(self, outcome: Outcome, seconds: float) -> None:
        """One API request, by outcome and duration."""
        self.requests[str(outcome)] += 1
        self.duration_count += 1
        self.duration_sum += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def succeeded(self, now: float) -> None:
        self.up = True
        self.polled = True
        self.last_success = now
        self.last_error = ""

    def failed(self, error: str) -> None:
        self.up = False
        self.polled = True
        self.last_error = error

    def skipped(self, seconds: int, now: float) -> None:
        self.skipped_seconds += seconds
        self.last_skip = now

    def restore(self, requests: dict[str, int], skipped: int, last_skip: float | None) -> None:
        """The figures a restart continues: the request counters and the skipped seconds."""
        self.requests.update(requests)
        self.skipped_seconds = skipped
        self.last_skip = last_skip

    def snapshot(
        self,
        name: str,
        counts: Counts,
        outcome_names: list[str],
        collected_until: int | None,
        quota: Quota,
        quota_exhausted: bool,
    ) -> Snapshot:
        """What scrapes see of the operation, its counts with its health as they are now."""
        return Snapshot(
            name,
            counts,
            outcome_names,
            up=self.up,
            polled=self.polled,
            last_success=self.last_success,
            collected_until=collected_until,
            requests=dict(self.requests),
            duration_buckets=(*self.buckets, self.duration_count),
            duration_sum=self.duration_sum,
            last_error=self.last_error,
            quota_exhausted=quota_exhausted,
            quota_limit=quota.limit,
            quota_used=quota.used,
            skipped_seconds=self.skipped_seconds,
            last_skip=self.last_skip,
        )


class Quota:
    """The token's daily call limit and calls used, read with `token_info` at most every
    `every` seconds (each read costs a call of quota; 0 never reads)."""

    def __init__(self, client: Client, every: float, operation: str) -> None:
        self.client = client
        self.every = every
        self.operation = operation
        self.read_at: float | None = None
        self.limit: int | None = None
        self.used: int | None = None

    def refresh(self, now: float) -> None:
        """A failure here is logged and leaves the last values; it does not fail the poll."""
        if not self.every or (self.read_at is not None and now - self.read_at < self.every):
            return
        self.read_at = now
        try:
            info = self.client.token_info()
        except ApiError as exc:
            log.warning(
                "could not read the token's quota (token_info)",
                extra={"operation": self.operation, "error": str(exc)},
            )
            return
        self.limit, self.used = info.limit, info.used
