"""One operation's counts and health, copied at one instant: what /metrics renders.

A poller publishes a snapshot when it commits; a backfill makes one from its tally. The
renderer (families, collector) reads nothing else, so it needs neither a poller nor a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.aggregation import LabelKey, Tally

# Upper bounds of the API request duration histogram, in seconds.
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
    quota_exhausted: bool
    outcomes: dict[tuple[str, str], int]
    outcome_names: list[str]
    sessions: dict[str, int]
    sessions_transferred: dict[str, int]
    customers_last_window: dict[str, int]
    quota_limit: int | None = None
    quota_used: int | None = None
    skipped_seconds: int = 0
    last_skip: float | None = None
    outside_range: int = 0
    newest_record: int | None = None


def snapshot_of(
    name: str,
    t: Tally,
    *,
    up: bool = True,
    polled: bool = True,
    last_success: float | None = None,
    collected_until: int | None = None,
    requests: dict[str, int] | None = None,
    duration_buckets: tuple[int, ...] = (0,),
    duration_sum: float = 0.0,
    last_error: str = "",
    quota_exhausted: bool = False,
    quota_limit: int | None = None,
    quota_used: int | None = None,
    skipped_seconds: int = 0,
    last_skip: float | None = None,
) -> Snapshot:
    """A snapshot of a Tally's counts with the poller's health; a backfill, which has no
    poller, leaves the health at these defaults."""
    return Snapshot(
        name=name,
        up=up,
        polled=polled,
        last_success=last_success,
        collected_until=collected_until,
        interactions=dict(t.interactions),
        last_window=dict(t.last_window),
        requests=requests or {},
        duration_buckets=duration_buckets,
        duration_sum=duration_sum,
        received=t.received,
        duplicates=t.duplicates,
        outside_range=t.outside_range,
        newest_record=t.newest,
        rejected=dict(t.rejected),
        overflow=dict(t.overflow),
        last_error=last_error,
        quota_exhausted=quota_exhausted,
        outcomes=dict(t.outcomes),
        outcome_names=t.outcome_names,
        sessions=dict(t.sessions_total),
        sessions_transferred=dict(t.transferred_total),
        customers_last_window=dict(t.customers_last_window),
        quota_limit=quota_limit,
        quota_used=quota_used,
        skipped_seconds=skipped_seconds,
        last_skip=last_skip,
    )
