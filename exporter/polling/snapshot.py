"""One operation's counts and health, copied at one instant: what /metrics renders.

A poller publishes a snapshot when it commits; a backfill makes one from its tally. The
renderer (families, collector) reads nothing else, so it needs neither a poller nor a client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter

from exporter.counting.counts import Counts

# Upper bounds of the API request duration histogram, in seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True)
class Snapshot:
    """Everything the collector renders for one operation, copied at one instant: what was
    counted (`counts`) and how the polling goes (the rest; a backfill leaves the defaults)."""

    name: str
    counts: Counts
    outcome_names: list[str]
    up: bool = True
    polled: bool = True
    last_success: float | None = None
    collected_until: int | None = None
    requests: dict[str, int] = field(default_factory=dict)
    duration_buckets: tuple[int, ...] = (0,)
    duration_sum: float = 0.0
    last_error: str = ""
    quota_exhausted: bool = False
    quota_limit: int | None = None
    quota_used: int | None = None
    skipped_seconds: int = 0
    last_skip: float | None = None

    @cached_property
    def channels(self) -> list[str]:
        """Channels with traffic, sorted: a dozen families have a series for each, and the
        label sets to read them from number thousands, so they are read once per snapshot."""
        return sorted(set(map(itemgetter(0), self.counts.interactions)))
