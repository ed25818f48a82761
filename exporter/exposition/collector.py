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

import threading
from collections.abc import Iterable, Iterator, Mapping
from itertools import compress, count
from operator import eq, itemgetter, ne
from typing import Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.counting.labels import LabelKey
from exporter.exposition import encoding, families
from exporter.exposition.encoding import Encoder
from exporter.polling.snapshot import Snapshot


class SaveCounter(Protocol):
    """What the page shows of a state store: how many of its saves failed."""

    @property
    def save_failures(self) -> int: ...


class ReloadState(Protocol):
    """What the page shows of config reloads."""

    @property
    def successful(self) -> bool: ...

    @property
    def last_success(self) -> float: ...


class SnapshotSource(Protocol):
    """Anything that publishes an operation's snapshot: a poller, or a backfill's tally."""

    def snapshot(self) -> Snapshot: ...


# A histogram's series: label values after `operation`, and its buckets.
Histogram = tuple[tuple[str, ...], families.Buckets]
# A series' line up to its value, the value last written, and the whole line with it.
_Line = tuple[bytes, float | None, bytes]
_VALUE, _TEXT = itemgetter(1), itemgetter(2)


class WolkvoxCollector(Collector):
    def __init__(
        self,
        sources: Iterable[SnapshotSource],
        interval: float,
        store: SaveCounter | None = None,
        reloads: ReloadState | None = None,
    ) -> None:
        self.sources = sources
        self.store = store
        self.reloads = reloads
        self.every = families.every(interval)
        # Per encoder: each family's header, and each operation's samples per family with
        # the snapshot they were rendered from.
        self._headers: dict[Encoder, list[bytes]] = {}
        self._samples: dict[tuple[Encoder, str], tuple[Snapshot, list[bytes]]] = {}
        # Per encoder, operation and family: each series' last line and value, and its line up
        # to the value.
        self._lines: dict[tuple[Encoder, str, str], dict[tuple[str, ...], _Line]] = {}
        # Per encoder, operation and histogram family: the data last encoded, and its lines.
        self._histograms: dict[tuple[Encoder, str, str], tuple[list[Histogram], bytes]] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        """Every family, without samples: what a registry checks for name clashes, so it need
        not call collect() at registration."""
        yield from families.render([], self.every)
        reload = (True, 0.0) if self.reloads is not None else None
        yield from families.process(0 if self.store is not None else None, reload)

    def collect(self) -> Iterator[Metric]:
        snaps = [s.snapshot() for s in self.sources]
        yield from families.render(snaps, self.every)
        yield from self._process()

    def _process(self) -> Iterator[Metric]:
        """The exporter's own families, read now: cheap, and rendered at every scrape."""
        r = self.reloads
        reload = (r.successful, r.last_success) if r is not None else None
        yield from families.process(self.store.save_failures if self.store else None, reload)

    def page(self, encoder: Encoder) -> bytes:
        """What `encoder` writes for a registry holding this collector, byte for byte, but
        each operation's samples are encoded once per snapshot it publishes and reused: with
        many operations polling at their own moments, a scrape after one operation's commit
        encodes that operation only."""
        snaps = [s.snapshot() for s in self.sources]
        with self._lock:
            headers = self._headers.get(encoder)
            if headers is None:
                empty = families.render([], self.every)
                headers = self._headers[encoder] = [encoding.header(encoder, m) for m in empty]
            bodies = [self._operation(encoder, s) for s in snaps]
        out = [header + b"".join(b[i] for b in bodies) for i, header in enumerate(headers)]
        tail = encoder(encoding.Fixed(self._process()))
        return b"".join(out) + tail

    def _operation(self, encoder: Encoder, snap: Snapshot) -> list[bytes]:
        cached = self._samples.get((encoder, snap.name))
        if cached is not None and cached[0] is snap:
            return cached[1]
        if cached is not None and cached[0].counts is snap.counts:
            # A commit that counted nothing new shares the counts it published before: only
            # the health families can have changed.
            bodies = [
                self._encode(encoder, snap, family) if family.name in families.HEALTH else old
                for family, old in zip(families.OPERATION, cached[1], strict=True)
            ]
        else:
            bodies = [self._encode(encoder, snap, family) for family in families.OPERATION]
        self._samples[(encoder, snap.name)] = (snap, bodies)
        return bodies

    def _encode(self, encoder: Encoder, snap: Snapshot, family: families.Family) -> bytes:
        """A family's samples of one operation as `encoder` writes them. A series' line up to
        its value (name, labels escaped) is encoded once while the series exists, and its line
        again only when its value changed: a commit changes the counters of the label sets
        that had rows, so most lines are reused as they are. Only the series of the current
        snapshot are kept."""
        key = (encoder, snap.name, family.name)
        if family.buckets is not None:  # a histogram: a few lines, encoded whole when changed
            data = list(family.buckets(snap))
            encoded = self._histograms.get(key)
            if encoded is not None and encoded[0] == data:
                return encoded[1]
            metrics = list(families.render([snap], self.every, [family]))
            lines = encoding.samples(encoder, metrics)
            self._histograms[key] = (data, lines)
            return lines
        known = self._lines.get(key, {})
        if family.series is not None and known:
            series = family.series(snap)
            if len(series) == len(known) and all(map(eq, series, known)):
                return _changed(known, series)
        current: dict[tuple[str, ...], _Line] = {}
        for labels, value in family.samples(snap):
            last = known.get(labels)
            if last is None:
                one = family.new(self.every, ("operation", *family.labels))
                one.add_metric([snap.name, *labels], 0.0)
                last = (encoding.line_prefix(encoder, one), None, b"")
            if last[1] != value:
                last = (last[0], value, encoding.line(last[0], value))
            current[labels] = last
        self._lines[key] = current
        return b"".join(map(_TEXT, current.values()))


def _changed(known: dict[tuple[str, ...], _Line], series: Mapping[LabelKey, int]) -> bytes:
    """A family's lines for a dict of series (`Family.series`) holding the series of `known`,
    its lines last encoded, in the same order: the values are compared by C-level passes and
    only the lines of those that changed are written again, in place. A commit adds to label
    sets counted before far more often than it creates one, so its Python work follows what
    it counted, not the label sets held (thousands per family at `labels.max_series`)."""
    differ = map(ne, series.values(), map(_VALUE, known.values()))
    changed = list(compress(count(), differ))
    if changed:
        labels, values = list(series), list(series.values())
        for i in changed:
            prefix = known[labels[i]][0]
            known[labels[i]] = (prefix, values[i], encoding.line(prefix, values[i]))
    return b"".join(map(_TEXT, known.values()))
