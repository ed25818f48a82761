"""The metric families table (exporter/families.py) is what /metrics, describe(), backfill and
the README say."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter import backfill, families
from exporter.collector import WolkvoxCollector
from exporter.simulator import Traffic
from exporter.state import StateStore
from tests.conftest import Clock, make_config, make_poller

ROOT = Path(__file__).parent.parent


def readme_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The README's metrics table: exposed name -> (type, labels)."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Metrics", 1)[1].split("\n\n", 2)[1]
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
        per_operation = f.read is not None or f.buckets is not None
        labels = ("operation", *f.labels) if per_operation else f.labels
        table[f.exposed] = (f.kind, labels)
    assert documented == table


def test_describe_announces_what_collect_renders(sim_factory, tmp_path):
    clock = Clock(1_790_000_100)
    _, url = sim_factory(Traffic(seed=2), clock)
    poller = make_poller(make_config(url), clock)
    clock.now += 400
    poller.poll_once()
    collector = WolkvoxCollector([poller], 300, StateStore(tmp_path / "state.db"))
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
    assert all(f.read is not None for f in backfill.BACKFILLED)
