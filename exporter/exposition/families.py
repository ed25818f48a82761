"""What /metrics says, as one table: each metric family's name, type, help and labels, and how
its samples are read from an operation's snapshot.

The collector renders the table, `describe()` yields it, backfill picks its families from it
by name, and a test holds the README's metrics table to it. Adding a counted metric is a row
here and the field it reads in `counts.Counts` (and the line of the tally that adds to it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.counting.conversations import RESULTS, SECONDS_BUCKETS, TURN_BUCKETS
from exporter.counting.counts import Counts
from exporter.counting.labels import LabelKey
from exporter.polling.snapshot import DURATION_BUCKETS, Snapshot
from exporter.settings.durations import format_duration

Kind = Literal["counter", "gauge", "histogram"]
Buckets = tuple[list[tuple[str, float]], float]  # (upper bound, cumulative count), and the sum
# Label values after `operation`, and the value: counts stay ints (`encoding.line` writes them
# fastest), the encoders write an int as its float.
Sample = tuple[tuple[str, ...], float]

LABEL_SET = ("channel", "rp_id", "routing_answer")


@dataclass(frozen=True)
class Family:
    name: str  # as exposed, without a counter's `_total`
    kind: Kind
    help: str  # `{every}` is replaced by how often the exporter polls
    labels: tuple[str, ...]  # after `operation`, which every per-operation family has
    read: Callable[[Snapshot], Iterable[Sample]] | None = None  # None: the process's own
    # A histogram's series (label values after `operation`, and their buckets), not `read`.
    buckets: Callable[[Snapshot], Iterable[tuple[tuple[str, ...], Buckets]]] | None = None
    # Instead of `read`, the snapshot's dict of series by label values (the label-set families,
    # thousands of series): the collector re-encodes only the series whose value changed.
    series: Callable[[Snapshot], Mapping[LabelKey, int]] | None = None

    @property
    def per_operation(self) -> bool:
        """Whether it is read from each operation's snapshot, rather than the process's own."""
        return self.read is not None or self.series is not None or self.buckets is not None

    def samples(self, snap: Snapshot) -> Iterable[Sample]:
        """Its samples in `snap` (not a histogram's): label values after `operation`, value."""
        if self.series is not None:
            return self.series(snap).items()
        assert self.read is not None, self.name  # a per-operation family that is no histogram
        return self.read(snap)

    @property
    def exposed(self) -> str:
        """The name a sample of it carries (a counter's with `_total`)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def new(self, every: str, labels: Sequence[str]) -> CounterMetricFamily | GaugeMetricFamily:
        text = self.help.format(every=every)
        if self.kind == "counter":
            return CounterMetricFamily(self.name, text, labels=list(labels))
        return GaugeMetricFamily(self.name, text, labels=list(labels))


def _one(value: float | None) -> Iterable[Sample]:
    """A single sample, or none while the value is unknown (absent rather than a fake 0)."""
    return [] if value is None else [((), float(value))]


def _by(values: dict[str, int]) -> Iterable[Sample]:
    return (((k,), n) for k, n in values.items())


def _channels(s: Snapshot) -> list[str]:
    """Channels with traffic: their KPI series are exposed at 0 too, as a ratio needs both."""
    return s.channels


def _outcomes(s: Snapshot) -> Iterable[Sample]:
    for ch in _channels(s):
        for outcome in s.outcome_names:
            yield (ch, outcome), s.counts.outcomes.get((ch, outcome), 0)


def duration(s: Snapshot) -> Iterable[tuple[tuple[str, ...], Buckets]]:
    counts = [
        (str(b), float(v)) for b, v in zip(DURATION_BUCKETS, s.duration_buckets, strict=False)
    ]
    counts.append(("+Inf", float(s.duration_buckets[-1])))
    return [((), (counts, s.duration_sum))]


def _by_session_channel(
    field: Callable[[Counts], dict[str, int]],
) -> Callable[[Snapshot], Iterable[Sample]]:
    """A series per channel with traffic (every session's channel has some), 0 included."""

    def read(s: Snapshot) -> Iterable[Sample]:
        values = field(s.counts)
        return (((ch,), values.get(ch, 0)) for ch in _channels(s))

    return read


def _sessions_by(
    field: Callable[[Counts], dict[tuple[str, str], int]],
) -> Callable[[Snapshot], Iterable[Sample]]:
    """A counter by channel and session result, every result of every channel."""

    def read(s: Snapshot) -> Iterable[Sample]:
        values = field(s.counts)
        for ch in _channels(s):
            for result in RESULTS:
                yield (ch, result), values.get((ch, result), 0)

    return read


def _histogram(
    observed: Callable[[Counts], dict[tuple[str, int], int]],
    sums: Callable[[Counts], dict[str, float]],
    bounds: tuple[int, ...],
) -> Callable[[Snapshot], Iterable[tuple[tuple[str, ...], Buckets]]]:
    """A histogram per channel from observations per bucket index (the last is +Inf)."""
    edges = [*map(floatToGoString, bounds), "+Inf"]

    def read(s: Snapshot) -> Iterable[tuple[tuple[str, ...], Buckets]]:
        values, total = observed(s.counts), sums(s.counts)
        for ch in _channels(s):
            cumulative = 0
            out: list[tuple[str, float]] = []
            for i, edge in enumerate(edges):
                cumulative += values.get((ch, i), 0)
                out.append((edge, cumulative))
            yield (ch,), (out, float(total.get(ch, 0.0)))

    return read


OPERATION: tuple[Family, ...] = (
    Family(
        "wolkvox_interactions",
        "counter",
        "Routing records (one per customer message routed) counted exactly once, by the "
        "record's channel, routing point and normalised routing answer; {every}.",
        LABEL_SET,
        series=lambda s: s.counts.interactions,
    ),
    Family(
        "wolkvox_interactions_last_window",
        "gauge",
        "Routing records dated in the most recent complete polling window; label sets seen "
        "earlier report 0 until quiet for the retention period; {every}.",
        LABEL_SET,
        series=lambda s: s.counts.last_window,
    ),
    Family(
        "wolkvox_up",
        "gauge",
        "1 if the last poll of the Wolkvox API succeeded, else 0; {every}.",
        (),
        lambda s: [((), 1.0 if s.up else 0.0)],
    ),
    Family(
        "wolkvox_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last poll in which every window was fetched and counted.",
        (),
        lambda s: _one(s.last_success),
    ),
    Family(
        "wolkvox_collected_until_timestamp_seconds",
        "gauge",
        "Unix time up to which records have been fetched and counted (records published "
        "later than settle_delay are still picked up by the lookback re-read).",
        (),
        lambda s: _one(s.collected_until),
    ),
    Family(
        "wolkvox_api_requests",
        "counter",
        "Requests made to the Wolkvox reports API, by outcome; each costs daily quota.",
        ("outcome",),
        lambda s: _by(s.requests),
    ),
    Family(
        "wolkvox_api_request_duration_seconds",
        "histogram",
        "Time taken by requests to the Wolkvox reports API, waiting for the token excluded.",
        (),
        buckets=duration,
    ),
    Family(
        "wolkvox_records_received",
        "counter",
        "Records received from the API, re-reads of the lookback span included; {every}.",
        (),
        lambda s: _one(s.counts.received),
    ),
    Family(
        "wolkvox_records_duplicate",
        "counter",
        "Received records not counted because they had already been counted (re-reads and "
        "overlapping windows).",
        (),
        lambda s: _one(s.counts.duplicates),
    ),
    Family(
        "wolkvox_records_outside_range",
        "counter",
        "Records counted although dated outside the date range that returned them: late "
        "selection by another time than the record's date (e.g. a session's close), or a "
        "wrong timezone setting when they are dated after it.",
        (),
        lambda s: _one(s.counts.outside_range),
    ),
    Family(
        "wolkvox_records_late",
        "counter",
        "Records counted after the window they are dated in was published as the last-window "
        "gauge, and so counted in the first open window; a steady rate means "
        "polling.settle_delay is shorter than the API's delay in publishing records.",
        (),
        lambda s: _one(s.counts.late),
    ),
    Family(
        "wolkvox_newest_record_timestamp_seconds",
        "gauge",
        "Date of the newest record counted, read in the operation's configured timezone; "
        "far behind collected_until on a busy operation, or ahead of now, the timezone "
        "is likely wrong. Absent until a record is counted.",
        (),
        lambda s: _one(s.counts.newest),
    ),
    Family(
        "wolkvox_records_rejected",
        "counter",
        "Received records that could not be counted, by reason.",
        ("reason",),
        lambda s: _by(s.counts.rejected),
    ),
    Family(
        "wolkvox_label_overflow",
        "counter",
        "Records whose label value was folded into __other__ because the label reached its "
        "cap of distinct values.",
        ("label",),
        lambda s: _by(s.counts.overflow),
    ),
    Family(
        "wolkvox_quota_exhausted",
        "gauge",
        "1 while the operation's token is paused because the daily API quota is used up "
        "(TOKEN LIMIT EXCEEDED); requests resume at the next local day.",
        (),
        lambda s: [((), 1.0 if s.quota_exhausted else 0.0)],
    ),
    Family(
        "wolkvox_routing_outcomes",
        "counter",
        "Routing records by channel and outcome, an outcome being the first configured rule "
        "(kpis.outcomes) whose pattern matches the routing answer as sent.",
        ("channel", "outcome"),
        _outcomes,
    ),
    Family(
        "wolkvox_sessions",
        "counter",
        "Chat sessions (distinct session_id) counted once, when their first record is counted; "
        "records without a session_id count in wolkvox_interactions_total only.",
        ("channel",),
        lambda s: (((ch,), s.counts.sessions_total.get(ch, 0)) for ch in _channels(s)),
    ),
    Family(
        "wolkvox_sessions_transferred",
        "counter",
        "Sessions counted once, at their first record with the outcome `transferred` (handed "
        "to an agent); divided by wolkvox_sessions_total it is the transfer rate.",
        ("channel",),
        lambda s: (((ch,), s.counts.transferred_total.get(ch, 0)) for ch in _channels(s)),
    ),
    Family(
        "wolkvox_sessions_ended",
        "counter",
        "Sessions ended, each once: kpis.session_timeout after its last record, judged by what "
        "has been collected. result: transferred (a record with outcome transferred), "
        "abandoned (else its last record's outcome is in kpis.awaiting_outcomes), contained.",
        ("channel", "result"),
        _sessions_by(lambda c: c.sessions_ended),
    ),
    Family(
        "wolkvox_sessions_open",
        "gauge",
        "Sessions started and not ended yet.",
        ("channel",),
        _by_session_channel(lambda c: c.sessions_open),
    ),
    Family(
        "wolkvox_session_turns",
        "histogram",
        "Records of a session, observed when it ends.",
        ("channel",),
        buckets=_histogram(lambda c: c.session_turns, lambda c: c.session_turns_sum, TURN_BUCKETS),
    ),
    Family(
        "wolkvox_session_duration_seconds",
        "histogram",
        "Time from a session's first record to its last, observed when it ends.",
        ("channel",),
        buckets=_histogram(
            lambda c: c.session_duration, lambda c: c.session_duration_sum, SECONDS_BUCKETS
        ),
    ),
    Family(
        "wolkvox_session_time_to_transfer_seconds",
        "histogram",
        "Time from a session's first record to its first transferred one, observed when a "
        "transferred session ends.",
        ("channel",),
        buckets=_histogram(
            lambda c: c.session_time_to_transfer,
            lambda c: c.session_time_to_transfer_sum,
            SECONDS_BUCKETS,
        ),
    ),
    Family(
        "wolkvox_sessions_recontact",
        "counter",
        "Ended sessions whose customer had another session of the operation ending at most "
        "kpis.recontact_window before this one began, by that earlier session's result.",
        ("channel", "previous"),
        _sessions_by(lambda c: c.sessions_recontact),
    ),
    Family(
        "wolkvox_sessions_with_fallback",
        "counter",
        "Ended sessions with at least one record of outcome fallback (the bot did not understand).",
        ("channel",),
        _by_session_channel(lambda c: c.sessions_with_fallback),
    ),
    Family(
        "wolkvox_sessions_expired",
        "counter",
        "Sessions still open kpis.session_horizon after their first record, ended as they "
        "stood (also counted in wolkvox_sessions_ended_total).",
        ("channel",),
        _by_session_channel(lambda c: c.sessions_expired),
    ),
    Family(
        "wolkvox_session_rows_after_end",
        "counter",
        "Records of a session that had already ended (dated more than kpis.session_timeout "
        "after its last record, or arriving after it ended): counted as interactions, never "
        "in the session's figures.",
        ("channel",),
        _by_session_channel(lambda c: c.session_rows_after_end),
    ),
    Family(
        "wolkvox_customers_last_window",
        "gauge",
        "Distinct customers (by id, else phone, else e-mail; hashed in memory, never stored) "
        "with records dated in the most recent complete polling window.",
        ("channel",),
        lambda s: _by(s.counts.customers_last_window),
    ),
    Family(
        "wolkvox_token_quota_limit",
        "gauge",
        "Daily API calls the operation's token may make, from token_info (read every "
        "polling.token_info_interval when enabled).",
        (),
        lambda s: _one(s.quota_limit),
    ),
    Family(
        "wolkvox_token_quota_used",
        "gauge",
        "API calls the operation's token has made today (by anyone using it), from "
        "token_info at its last read.",
        (),
        lambda s: _one(s.quota_used),
    ),
    Family(
        "wolkvox_skipped_seconds",
        "counter",
        "Seconds of records given up without counting them, because the poller was further "
        "behind than polling.max_catchup (a long outage or quota pause); backfill recovers "
        "them.",
        (),
        lambda s: _one(s.skipped_seconds),
    ),
    Family(
        "wolkvox_last_skip_timestamp_seconds",
        "gauge",
        "Unix time at which the poller last gave up a span of records (see "
        "wolkvox_skipped_seconds_total); absent if it never did.",
        (),
        lambda s: _one(s.last_skip),
    ),
)

# The families that read how the polling goes rather than what was counted: a commit that
# counted nothing new (the tally unchanged) renders only these again.
HEALTH = frozenset(
    {
        "wolkvox_up",
        "wolkvox_last_success_timestamp_seconds",
        "wolkvox_collected_until_timestamp_seconds",
        "wolkvox_api_requests",
        "wolkvox_api_request_duration_seconds",
        "wolkvox_quota_exhausted",
        "wolkvox_token_quota_limit",
        "wolkvox_token_quota_used",
        "wolkvox_skipped_seconds",
        "wolkvox_last_skip_timestamp_seconds",
    }
)

# The process's own families: not read from a snapshot.
STATE_SAVE_FAILURES = Family(
    "wolkvox_state_save_failures",
    "counter",
    "Saves of the state file (state.path) that failed; while they fail, a restart resumes "
    "from the last good save and /-/ready answers 503.",
    (),
)
BUILD_INFO = Family(
    "wolkvox_exporter_build_info",
    "gauge",
    "A metric with a constant 1 value labelled by the exporter's version.",
    ("version",),
)
CONFIG_RELOAD_SUCCESSFUL = Family(
    "wolkvox_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last reload of the config file (SIGHUP or POST /-/reload) succeeded; 0 while an "
    "older config keeps running because the new one was refused.",
    (),
)
CONFIG_RELOAD_SUCCESS_TIMESTAMP = Family(
    "wolkvox_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the running config was loaded: at start, or by the last successful reload.",
    (),
)
ALL: tuple[Family, ...] = (
    *OPERATION,
    STATE_SAVE_FAILURES,
    CONFIG_RELOAD_SUCCESSFUL,
    CONFIG_RELOAD_SUCCESS_TIMESTAMP,
    BUILD_INFO,
)
BY_NAME = {f.name: f for f in ALL}


def every(interval: float) -> str:
    """How often the exporter polls, as the help texts say it."""
    return f"polled every {format_duration(interval)} in the background"


def render(
    snaps: Sequence[Snapshot], every: str, families: Sequence[Family] = OPERATION
) -> Iterator[Metric]:
    """The given per-operation families, with the samples of every snapshot."""
    for family in families:
        if family.buckets is not None:
            histogram = HistogramMetricFamily(
                family.name,
                family.help.format(every=every),
                labels=["operation", *family.labels],
            )
            for s in snaps:
                for labels, (buckets, total) in family.buckets(s):
                    histogram.add_metric([s.name, *labels], buckets, total)
            yield histogram
        elif family.per_operation:
            metric = family.new(every, ("operation", *family.labels))
            for s in snaps:
                for labels, value in family.samples(s):
                    metric.add_metric([s.name, *labels], value)
            yield metric


def process(
    save_failures: int | None, reload: tuple[bool, float] | None = None
) -> Iterator[Metric]:
    """The exporter's own families: its version, its failed state saves if it has a store, and
    its config reloads (whether the last succeeded, and when the running config was loaded)
    if it runs from a config file."""
    if save_failures is not None:
        failures = STATE_SAVE_FAILURES.new("", ())
        failures.add_metric([], save_failures)
        yield failures
    if reload is not None:
        successful = CONFIG_RELOAD_SUCCESSFUL.new("", ())
        successful.add_metric([], 1 if reload[0] else 0)
        yield successful
        loaded = CONFIG_RELOAD_SUCCESS_TIMESTAMP.new("", ())
        loaded.add_metric([], reload[1])
        yield loaded
    build = BUILD_INFO.new("", BUILD_INFO.labels)
    build.add_metric([__version__], 1)
    yield build
