"""Hostile records and label floods: bad rows are counted as rejected, the rest counted, the
exposition stays valid, and memory is bounded by the look-back horizon, not by uptime."""

from __future__ import annotations

import random
import string
import subprocess
import tracemalloc
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.api import windowing
from exporter.counting import labels
from exporter.exposition.collector import WolkvoxCollector
from exporter.tools.simulator import Row, Traffic
from tests.support.harness import Clock, expected_counts, make_config, make_poller, promtool

START = 1_790_000_100
NASTY = 'say "hi" \\ back\nslash\x00nul 😀 ' + "x" * 100_000


def hostile_rows(minute: int, base: dict[str, Any]) -> list[Row]:
    """Rows dated mid-minute, away from window edges, so each is read in one window only."""
    date = minute + 30
    good = [
        base | {"routing_answer": NASTY},
        base | {"rp_id": 'rp"\\\n\x00'},
        base | {"channel": " WhatsApp 😀 "},
        base | {"customer_name": {"nested": 1}},  # a field we never read: still counted
        # Odd JSON in fields only the KPIs read: the interaction still counts.
        base | {"session_id": ["not", "a", "string"], "customer_id": {"x": 1}},
        base | {"session_id": 12.5, "customer_id": None, "customer_phone": 573001234567},
    ]
    bad: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in base.items() if k != "date"}, "missing_field"),
        (base | {"channel": 123}, "invalid_type"),
        (base | {"date": "ayer a las 3"}, "invalid_date"),
    ]
    return [Row(date, date, r) for r in good] + [Row(date, date, r) for r, _ in bad]


class HostileTraffic(Traffic):
    def _generate(self, minute: int) -> list[Row]:
        rows = super()._generate(minute)
        if rows and (minute // 60) % 3 == 0:
            rows += hostile_rows(minute, dict(rows[0].record) | {"session_id": f"h{minute}"})
        return rows


def test_hostile_records_are_rejected_or_counted_and_the_exposition_stays_valid(sim_factory):
    clock = Clock(START)
    traffic = HostileTraffic(seed=17, rate_per_minute=20, late_fraction=0.0, duplicate_fraction=0.0)
    _, url = sim_factory(traffic, clock)
    poller = make_poller(make_config(url), clock)
    for _ in range(24):
        clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
        poller.poll_once()
    snap = poller.snapshot()
    assert poller.origin is not None and snap.collected_until is not None
    rows = traffic.rows(poller.origin, snap.collected_until - 1)
    hostile_minutes = len(
        {r.date for r in rows if str(r.record.get("session_id", "")).startswith("h")}
    )
    assert hostile_minutes > 10
    countable = [
        r
        for r in rows
        if "date" in r.record
        and isinstance(r.record["channel"], str)
        and r.record["date"] != "ayer a las 3"
    ]
    assert snap.counts.interactions == dict(expected_counts(countable))
    # Each bad row is rejected once, although the look-back reads most of them twice.
    assert snap.counts.rejected == {
        "undecodable": 0,
        "missing_field": hostile_minutes,
        "invalid_type": hostile_minutes,
        "invalid_date": hostile_minutes,
    }
    assert snap.counts.outside_range == 0

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([poller], 300))
    exposition = generate_latest(registry)
    check = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    parsed: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            if s.name == "wolkvox_interactions_total":
                parsed[(s.labels["channel"], s.labels["rp_id"], s.labels["routing_answer"])] = int(
                    s.value
                )
    assert parsed == Counter(snap.counts.interactions)  # every hostile label value round-trips
    assert max(len(k[2]) for k in parsed) <= 64
    assert ("whatsapp 😀", "1", "x") not in parsed and any(k[0] == "whatsapp 😀" for k in parsed)
    assert all("\x00" not in v and "\n" not in v for k in parsed for v in k)


class FloodTraffic(Traffic):
    """Every row a reply never seen before, as a flow that echoes free text would produce."""

    def _generate(self, minute: int) -> list[Row]:
        rng = random.Random(minute)
        rows = super()._generate(minute)
        for r in rows:
            r.record["routing_answer"] = "".join(rng.choices(string.ascii_letters, k=12))
        return rows


def test_a_flood_of_distinct_answers_keeps_series_and_memory_bounded(sim_factory):
    clock = Clock(START)
    traffic = FloodTraffic(
        seed=4,
        rate_per_minute=60,
        daily_curve=False,
        late_fraction=0.1,
        late_max=200,
        duplicate_fraction=0.02,
    )
    _, url = sim_factory(traffic, clock)
    poller = make_poller(
        make_config(
            url, labels={"routing_answer": {"max_values": 20}, "last_window_retention": "2h"}
        ),
        clock,
    )

    def day() -> None:
        for _ in range(288):
            clock.now = windowing.next_poll_at(clock.now, 300, 60) + 0.5
            poller.poll_once()

    def exporter_bytes() -> int:
        """Memory allocated by the exporter's code (the in-process simulator excluded)."""
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*/exporter/*"), tracemalloc.Filter(False, "*/simulator.py")]
        )
        return sum(stat.size for stat in snapshot.statistics("filename"))

    day()
    day()
    # What a day allocates and still holds at its end: the look-back horizon and the bounded
    # caches (a few MB at most). Keeping the day's 86,000 rows would hold over 10 MB.
    tracemalloc.start()
    day()
    retained = exporter_bytes()
    tracemalloc.stop()
    snap = poller.snapshot()
    tally = poller.tally
    answers = {k[2] for k in snap.counts.interactions}
    assert len(answers) == 21 and labels.OTHER in answers
    assert snap.counts.overflow["routing_answer"] > 60 * 60 * 24 * 2
    assert len(snap.counts.interactions) <= 9 * 4 * 21  # channels x routing points x (cap + other)
    assert len(snap.counts.last_window) <= len(snap.counts.interactions)
    # Remembered rows span the look-back horizon (10 to 12 minutes of rows, which come in
    # conversations: clumps of a few), not three days.
    assert len(tally.seen) < 60 * 14
    assert len(tally.ledger.by_window) <= 4
    assert retained < 6_000_000, retained
