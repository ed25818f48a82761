"""The metric families table (exporter/exposition/families.py) is what /metrics, describe(),
backfill and docs/metrics.md say."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_encoder

from exporter.api import windowing
from exporter.cli.reloading import ReloadStatus
from exporter.counting.counts import Counts
from exporter.exposition import encoding, families
from exporter.exposition.collector import WolkvoxCollector
from exporter.polling.snapshot import Snapshot
from exporter.state.store import StateStore
from exporter.tools.backfill import replay as backfill
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, make_config, make_poller, other_poller

ROOT = Path(__file__).parent.parent.parent


def readme_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The metrics table of docs/metrics.md: exposed name -> (type, labels)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text.split("# Metrics", 1)[1].split("\n\n", 2)[1]
    out = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names, kind, labels = cells[0], cells[1], cells[2]
        for name in re.findall(r"`([a-z_*]+)`", names):
            out[name] = (kind, tuple(x.strip() for x in labels.split(",") if x.strip()))
    return out


def test_the_readme_lists_every_family_with_its_type_and_labels():
    documented = readme_metrics()
    documented.pop("process_*")  # prometheus_client's process collector, not ours
    table = {}
    for f in families.ALL:
        per_operation = f.per_operation
        labels = ("operation", *f.labels) if per_operation else f.labels
        table[f.exposed] = (f.kind, labels)
    assert documented == table


def test_describe_announces_what_collect_renders(sim_factory, tmp_path):
    clock = Clock(1_790_000_100)
    _, url = sim_factory(Traffic(seed=2), clock)
    poller = make_poller(make_config(url), clock)
    clock.now += 400
    poller.poll_once()
    reloads = ReloadStatus()  # an exporter run from a config file reports its reloads
    collector = WolkvoxCollector([poller], 300, StateStore(tmp_path / "state.db"), reloads)
    described = [(m.name, m.type, m.documentation) for m in collector.describe()]
    collected = [(m.name, m.type, m.documentation) for m in collector.collect()]
    assert described == collected
    assert {name for name, _, _ in described} == {f.name for f in families.ALL}
    # A registry that asks describe() finds every name, so clashes show at registration.
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("wolkvox_up", {"operation": "main"}) == 1


def test_backfill_writes_families_of_the_table_by_name():
    assert {f.name for f in backfill.BACKFILLED} <= set(families.BY_NAME)
    # Read from the counts, as /metrics renders them: counters, gauges and histograms.
    assert all(f.per_operation for f in backfill.BACKFILLED)


def test_the_page_is_what_the_encoders_write_and_reuses_operations_that_did_not_commit(
    sim_factory, tmp_path
):
    """WolkvoxCollector.page, which the server renders, against prometheus_client's own
    encoders on a registry with the collector: byte for byte, in both formats, before and
    after one of two operations commits; the other operation's samples are not encoded
    again."""
    clock = Clock(1_790_000_100)
    _, url_a = sim_factory(Traffic(seed=5, rate_per_minute=200, daily_curve=False), clock)
    _, url_b = sim_factory(Traffic(seed=6, rate_per_minute=200, daily_curve=False), clock)
    store = StateStore(tmp_path / "state.db")
    a = make_poller(make_config(url_a), clock, store=store)
    b = other_poller(url_b, clock, store)
    collector = WolkvoxCollector([a, b], 300, store)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encoders = (text_encoder, openmetrics_encoder)
    for step in range(3):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        a.poll_once()
        if step != 1:
            b.poll_once()
        for encoder in encoders:
            before = dict(collector._samples)
            page = collector.page(encoder)
            assert page == encoder(registry), (step, encoder)
            if step == 1 and (encoder, "other") in before:
                # Only `main` committed: `other`'s samples are the very bytes of before.
                assert collector._samples[(encoder, "other")] is before[(encoder, "other")]
    lines = collector.page(text_encoder).splitlines()
    assert any(
        line.startswith(b"wolkvox_interactions_total{") and b'operation="other"' in line
        for line in lines
    )


@given(
    st.one_of(
        st.integers(-(2**63), 2**63),
        st.floats(allow_nan=True),
        st.sampled_from([0, 0.0, -0.0, 999_999, 10**6, -(10**6), 10**16, -(10**16)]),
    )
)
def test_a_series_line_writes_its_value_as_the_encoders_do(value: float) -> None:
    """Counts take a short way to their text; every value must read as the encoders write it
    (Go's float format: `12.0`, `1e+06`, `+Inf`), whatever its type and size."""
    prefix = b'wolkvox_interactions_total{operation="main"} '
    assert encoding.line(prefix, value) == prefix + encoding.number(value).encode() + b"\n"


class _Published:
    """A source whose snapshot a test replaces, as a poller's commit does."""

    def __init__(self) -> None:
        self.snap = Snapshot("main", Counts(), ["transferred", "bot_answer"])

    def snapshot(self) -> Snapshot:
        return self.snap


_KEYS = [(f"ch{i % 3}", f"rp{i % 5}", f"answer {i}") for i in range(12)]
# A commit: (label set index, count added; 0 drops the set from the last window).
_Commit = list[tuple[int, int]]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 3)), max_size=6), max_size=8))
def test_the_label_set_families_rewrite_changed_series_and_keep_the_encoders_order(
    commits: list[_Commit],
) -> None:
    """Commits that add to label sets already shown, create new ones, or drop some from the
    last window (as its retention does): after each, the page is what the encoders write for
    the snapshot, though only the changed lines of a family were written again."""
    source = _Published()
    collector = WolkvoxCollector([source], 300)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    counts = Counts()
    for commit in [[(0, 1), (1, 2)], *commits]:
        for i, n in commit:
            key = _KEYS[i]
            if n:
                counts.interactions[key] = counts.interactions.get(key, 0) + n
                counts.last_window[key] = n
            else:
                counts.last_window.pop(key, None)
        source.snap = Snapshot("main", counts.copy(), ["transferred", "bot_answer"])
        for encoder in (text_encoder, openmetrics_encoder):
            assert collector.page(encoder) == encoder(registry)
