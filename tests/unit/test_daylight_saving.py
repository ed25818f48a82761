"""Daylight saving: exactly once through both clock changes of a year, in live polling, after a
crash in the repeated hour, and in a catch-up across the change.

The simulated API compares request bounds with row times as wall-time strings (`wall_time`),
as an API that keeps the operation's wall time does: a request for the repeated hour returns the
rows of both occurrences, and one whose bounds are inverted is refused (and counted)."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from exporter.api import windowing
from exporter.api.client import ApiError, Client, TokenGate, fetch_within_cap
from exporter.tools.backfill.request import BackfillError, parse_when
from exporter.tools.simulator import Simulator, Traffic
from tests.support.harness import TOKEN, Clock, expected_counts, make_config

YEAR = (
    int(datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()),
    int(datetime(2027, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()),
)
ZONES = ("America/Santiago", "Europe/Madrid")


def transitions() -> list[tuple[str, str, int, int]]:
    """(zone, "fall-back"/"spring-forward", the change's first second, its step) of 2026."""
    out = []
    for name in ZONES:
        for change, step in windowing.offset_changes(*YEAR, ZoneInfo(name)):
            out.append((name, "fall-back" if step < 0 else "spring-forward", change, step))
    assert len(out) == 4  # both zones change twice a year
    return out


CHANGES = transitions()
IDS = [f"{zone}-{kind}" for zone, kind, _, _ in CHANGES]


def traffic(zone: str, select_by: str, start: int) -> Traffic:
    return Traffic(
        seed=21,
        zone=ZoneInfo(zone),
        rate_per_minute=20,
        daily_curve=False,
        late_fraction=0.2,
        late_max=200,
        select_by=select_by,
        wall_time=True,
        start=start,
    )


def config(url: str, zone: str, **polling: object):
    cfg = make_config(url, **polling)
    op = cfg.operations[0].model_copy(update={"timezone": zone})
    return cfg.model_copy(update={"operations": [op]})


def after_fall_back(sim_factory, zone: str) -> tuple[Simulator, Client, int]:
    """The simulated API three hours after the zone's fall-back of the year (wall-time
    selection), a client of it without retries, and the change's first second."""
    _, _, change, _ = next(c for c in CHANGES if c[:2] == (zone, "fall-back"))
    sim, url = sim_factory(traffic(zone, "date", change - 3 * 3600), Clock(change + 3 * 3600))
    client = Client(
        url=f"{url}/api/v2/reports_manager.php",
        token=TOKEN,
        zone=ZoneInfo(zone),
        gate=TokenGate(0),
        observe=lambda *_: None,
        retries=0,
    )
    return sim, client, change


def test_a_range_across_a_fall_back_is_asked_in_parts_with_wall_bounds_in_order(sim_factory):
    sim, client, change = after_fall_back(sim_factory, "America/Santiago")
    got: list[tuple[int, int, int]] = []
    first, last = change - 1800, change + 1799  # 23:30 the first time to 23:29:59 the second
    fetch_within_cap(client, first, last, 6000, lambda a, lo, hi: got.append((lo, hi, a.size)), "x")
    assert [(lo, hi) for lo, hi, _ in got] == [(first, change - 1), (change, last)]
    assert sim.stats.inverted == 0 and all(size > 0 for _, _, size in got)
    client.close()


def test_backfill_times_that_happen_twice_are_refused_and_skipped_ones_move_forward(caplog):
    santiago = ZoneInfo("America/Santiago")
    with pytest.raises(BackfillError) as refused:
        parse_when("2026-04-04T23:30:00", santiago)
    message = str(refused.value)
    assert "happens twice" in message
    assert "2026-04-04T23:30:00-03:00" in message and "2026-04-04T23:30:00-04:00" in message
    first = parse_when("2026-04-04T23:30:00-03:00", santiago)
    second = parse_when("2026-04-04T23:30:00-04:00", santiago)
    assert second - first == 3600
    # Chile's spring-forward skips midnight: the day starts at 01:00.
    with caplog.at_level(logging.WARNING):
        day = parse_when("2026-09-06", santiago)
    assert datetime.fromtimestamp(day, santiago).strftime("%H:%M") == "01:00"
    assert "does not exist" in caplog.text and "2026-09-06T01:00:00" in caplog.text


def test_the_simulator_refuses_and_counts_inverted_wall_bounds(sim_factory):
    sim, client, change = after_fall_back(sim_factory, "Europe/Madrid")
    with pytest.raises(ApiError):
        client.fetch(change - 1800, change + 1799)  # one request, bounds inverted in wall time
    assert sim.stats.inverted == 1
    client.close()
    # Ground truth is the same whichever way requests select rows.
    rows = sim.tenants["default"].rows(change - 3600, change + 3599)
    assert sum(expected_counts(rows).values()) == len(rows) > 0
