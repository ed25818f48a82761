from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.api import windowing

T0 = 1_780_000_200  # a multiple of 300 and of 900


def test_first_start_reads_only_the_last_complete_window():
    plan = windowing.plan(
        cursor=None,
        origin=None,
        now=T0 + 7 * 60 + 5,
        interval=300,
        settle_delay=60,
        lookback=300,
        max_catchup=86400,
    )
    aligned = (T0 + 6 * 60 + 5) // 300 * 300
    assert [p.window for p in plan.pieces] == [windowing.Window(aligned - 300, aligned)]
    # The look-back never reaches before the first window ever read.
    assert plan.pieces[0].first == aligned - 300 == plan.origin
    assert plan.pieces[0].last == aligned - 1


def test_steady_state_is_one_request_that_rides_the_lookback():
    plan = windowing.plan(
        cursor=T0,
        origin=T0 - 3000,
        now=T0 + 300 + 60,
        interval=300,
        settle_delay=60,
        lookback=300,
        max_catchup=86400,
    )
    assert len(plan.pieces) == 1
    piece = plan.pieces[0]
    assert (piece.first, piece.last) == (T0 - 301, T0 + 299)


def test_catch_up_is_cut_into_interval_pieces_and_bounded():
    plan = windowing.plan(
        cursor=T0 - 86400 * 3,
        origin=T0 - 86400 * 3,
        now=T0 + 60,
        interval=300,
        settle_delay=60,
        lookback=300,
        max_catchup=3600,
    )
    assert plan.skipped == 86400 * 3 - 3600
    assert len(plan.pieces) == 12
    assert all(p.window.end - p.window.start == 300 for p in plan.pieces)
    # After a skip the first piece does not re-read the look-back: the skipped span is given up
    # whole, for backfill. The others overlap by one second.
    assert plan.pieces[0].first == plan.pieces[0].window.start
    assert all(p.first == p.window.start - 1 for p in plan.pieces[1:])


def test_consecutive_pieces_merge_into_one_request_that_keeps_the_first_ones_reach():
    plan = windowing.plan(
        cursor=T0 - 3 * 3600,
        origin=T0 - 86400,
        now=T0 + 60,
        interval=300,
        settle_delay=60,
        lookback=300,
        max_catchup=86400,
    )
    merged = [windowing.merge(plan.pieces[i : i + 5]) for i in range(0, len(plan.pieces), 5)]
    assert [m.window.end - m.window.start for m in merged] == [1500] * 7 + [300]
    assert merged[0].first == T0 - 3 * 3600 - 301  # the look-back of the poll's first piece
    assert all(m.first == m.window.start - 1 for m in merged[1:])
    assert merged[-1].last == T0 - 1


def test_nothing_to_do_before_the_window_is_complete():
    plan = windowing.plan(
        cursor=T0,
        origin=T0,
        now=T0 + 30,
        interval=300,
        settle_delay=60,
        lookback=0,
        max_catchup=3600,
    )
    assert plan.pieces == ()


@given(
    interval=st.sampled_from([1, 2, 60, 300, 900]),
    settle=st.integers(0, 600),
    lookback=st.integers(0, 1800),
    catchup_windows=st.integers(1, 50),
    span=st.integers(1, 12),
    steps=st.lists(st.tuples(st.integers(0, 4000), st.booleans()), min_size=1, max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_windows_cover_time_without_gaps_or_overlaps(
    interval, settle, lookback, catchup_windows, span, steps
):
    """Whatever the poll times and whichever polls fail, committed windows tile time exactly."""
    max_catchup = catchup_windows * interval
    now = float(T0)
    cursor: int | None = None
    origin: int | None = None
    committed: list[windowing.Window] = []
    for advance, succeeds in steps:
        now += advance
        plan = windowing.plan(
            cursor=cursor,
            origin=origin,
            now=now,
            interval=interval,
            settle_delay=settle,
            lookback=lookback,
            max_catchup=max_catchup,
        )
        origin = plan.origin
        if plan.skipped:
            assert cursor is not None
            committed.append(windowing.Window(cursor, cursor + plan.skipped))  # a declared gap
        # The poller asks for up to `span` consecutive pieces at once.
        requests = [
            windowing.merge(plan.pieces[i : i + span]) for i in range(0, len(plan.pieces), span)
        ]
        for piece in requests:
            w = piece.window
            assert 0 < w.end - w.start <= span * interval
            assert w.end % interval == 0  # pieces end on interval boundaries: windows stay whole
            assert w.end <= now - settle
            # The request range covers the window, reaches back at most lookback + 1s, not before origin.
            assert piece.first <= w.start and piece.last == w.end - 1
            assert piece.first >= max(origin, w.start - lookback - 1)
        if plan.skipped:  # nothing of a skipped span is read, so backfill recovers it exactly
            assert requests[0].first == requests[0].window.start
        if succeeds and plan.pieces:
            committed.extend(p.window for p in requests)
            cursor = plan.pieces[-1].window.end
        elif not succeeds and plan.skipped and cursor is not None:
            committed.pop()  # the skip is re-planned next time
    for a, b in itertools.pairwise(committed):
        assert a.end == b.start


@given(first=st.integers(0, 10**6), width=st.integers(0, 10**5))
def test_split_halves_cover_the_range_and_shrink(first, width):
    last = first + width
    halves = windowing.split(first, last)
    if width == 0:
        assert halves is None
        return
    assert halves is not None
    (a, b), (c, d) = halves
    assert a == first and d == last and c <= b + 1
    assert b - a < width and d - c < width


def test_next_poll_waits_for_the_window_and_the_settle_delay():
    assert windowing.next_poll_at(T0 + 10, 300, 60) == (T0 + 10 - 60) // 300 * 300 + 300 + 60
