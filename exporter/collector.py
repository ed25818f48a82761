"""The prometheus_client collector: renders the published snapshots at each scrape, without
any I/O. The families are the table in exporter/families.py.

Sample output:

    # HELP wolkvox_interactions_total Routing records counted, each exactly once, ...
    # TYPE wolkvox_interactions_total counter
    wolkvox_interactions_total{operation="bogota",channel="whatsapp",rp_id="101",routing_answer="transfer_skill"} 42.0
    # TYPE wolkvox_up gauge
    wolkvox_up{operation="bogota"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import families
from exporter.snapshot import Snapshot
from exporter.state import StateStore


class SnapshotSource(Protocol):
    """Anything that publishes an operation's snapshot: a poller, or a backfill's tally."""

    def snapshot(self) -> Snapshot: ...


class WolkvoxCollector(Collector):
    def __init__(
        self, sources: Sequence[SnapshotSource], interval: float, store: StateStore | None = None
    ) -> None:
        self.sources = sources
        self.store = store
        self.every = families.every(interval)

    def describe(self) -> Iterator[Metric]:
        """Every family, without samples: what a registry checks for name clashes, so it need
        not call collect() at registration."""
        yield from families.render([], self.every)
        yield from families.process(0 if self.store is not None else None)

    def collect(self) -> Iterator[Metric]:
        snaps = [s.snapshot() for s in self.sources]
        yield from families.render(snaps, self.every)
        yield from families.process(self.store.save_failures if self.store else None)
