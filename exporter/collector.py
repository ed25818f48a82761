"""Rendering poller snapshots as metric families on each scrape, without any I/O.

Sample output:

    # HELP wolkvox_interactions_total Routing records counted, each exactly once, ...
    # TYPE wolkvox_interactions_total counter
    wolkvox_interactions_total{operation="bogota",channel="whatsapp",rp_id="101",routing_answer="transfer_skill"} 42.0
    # TYPE wolkvox_up gauge
    wolkvox_up{operation="bogota"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import format_duration
from exporter.poller import DURATION_BUCKETS, Poller
from exporter.state import StateStore

LABELS = ["operation", "channel", "rp_id", "routing_answer"]


class WolkvoxCollector(Collector):
    def __init__(
        self, pollers: Sequence[Poller], interval: float, store: StateStore | None = None
    ) -> None:
        self.pollers = pollers
        self.store = store
        self.every = f"polled every {format_duration(interval)} in the background"

    def describe(self) -> Iterator[Metric]:
        # Declared so the registry does not run collect() at registration time.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snaps = [p.snapshot() for p in self.pollers]
        every = self.every

        interactions = CounterMetricFamily(
            "wolkvox_interactions",
            f"Routing records (one per customer message routed) counted exactly once, by the "
            f"record's channel, routing point and normalised routing answer; {every}.",
            labels=LABELS,
        )
        last_window = GaugeMetricFamily(
            "wolkvox_interactions_last_window",
            f"Routing records dated in the most recent complete polling window; label sets seen "
            f"earlier report 0 until quiet for the retention period; {every}.",
            labels=LABELS,
        )
        up = GaugeMetricFamily(
            "wolkvox_up",
            f"1 if the last poll of the Wolkvox API succeeded, else 0; {every}.",
            labels=["operation"],
        )
        last_success = GaugeMetricFamily(
            "wolkvox_last_success_timestamp_seconds",
            "Unix time of the last poll in which every window was fetched and counted.",
            labels=["operation"],
        )
        until = GaugeMetricFamily(
            "wolkvox_collected_until_timestamp_seconds",
            "Unix time up to which records have been fetched and counted (records published "
            "later than settle_delay are still picked up by the lookback re-read).",
            labels=["operation"],
        )
        requests = CounterMetricFamily(
            "wolkvox_api_requests",
            "Requests made to the Wolkvox reports API, by outcome; each costs daily quota.",
            labels=["operation", "outcome"],
        )
        duration = HistogramMetricFamily(
            "wolkvox_api_request_duration_seconds",
            "Time taken by requests to the Wolkvox reports API, waiting for the token excluded.",
            labels=["operation"],
        )
        received = CounterMetricFamily(
            "wolkvox_records_received",
            f"Records received from the API, re-reads of the lookback span included; {every}.",
            labels=["operation"],
        )
        duplicates = CounterMetricFamily(
            "wolkvox_records_duplicate",
            "Received records not counted because they had already been counted (re-reads and "
            "overlapping windows).",
            labels=["operation"],
        )
        outside = CounterMetricFamily(
            "wolkvox_records_outside_range",
            "Records counted although dated outside the date range that returned them: late "
            "selection by another time than the record's date (e.g. a session's close), or a "
            "wrong timezone setting when they are dated after it.",
            labels=["operation"],
        )
        newest = GaugeMetricFamily(
            "wolkvox_newest_record_timestamp_seconds",
            "Date of the newest record counted, read in the operation's configured timezone; "
            "far behind collected_until on a busy operation, or ahead of now, the timezone "
            "is likely wrong. Absent until a record is counted.",
            labels=["operation"],
        )
        rejected = CounterMetricFamily(
            "wolkvox_records_rejected",
            "Received records that could not be counted, by reason.",
            labels=["operation", "reason"],
        )
        overflow = CounterMetricFamily(
            "wolkvox_label_overflow",
            "Records whose label value was folded into __other__ because the label reached its "
            "cap of distinct values.",
            labels=["operation", "label"],
        )
        quota = GaugeMetricFamily(
            "wolkvox_quota_exhausted",
            "1 while the operation's token is paused because the daily API quota is used up "
            "(TOKEN LIMIT EXCEEDED); requests resume at the next local day.",
            labels=["operation"],
        )
        outcomes = CounterMetricFamily(
            "wolkvox_routing_outcomes",
            "Routing records by channel and outcome, an outcome being the first configured rule "
            "(kpis.outcomes) whose pattern matches the routing answer as sent.",
            labels=["operation", "channel", "outcome"],
        )
        sessions = CounterMetricFamily(
            "wolkvox_sessions",
            "Chat sessions (distinct session_id) counted once, when their first record is counted; "
            "records without a session_id count in wolkvox_interactions_total only.",
            labels=["operation", "channel"],
        )
        transferred = CounterMetricFamily(
            "wolkvox_sessions_transferred",
            "Sessions counted once, at their first record with the outcome `transferred` (handed "
            "to an agent); divided by wolkvox_sessions_total it is the transfer rate.",
            labels=["operation", "channel"],
        )
        customers = GaugeMetricFamily(
            "wolkvox_customers_last_window",
            "Distinct customers (by id, else phone, else e-mail; hashed in memory, never stored) "
            "with records dated in the most recent complete polling window.",
            labels=["operation", "channel"],
        )
        quota_limit = GaugeMetricFamily(
            "wolkvox_token_quota_limit",
            "Daily API calls the operation's token may make, from token_info (read every "
            "polling.token_info_interval when enabled).",
            labels=["operation"],
        )
        quota_used = GaugeMetricFamily(
            "wolkvox_token_quota_used",
            "API calls the operation's token has made today (by anyone using it), from "
            "token_info at its last read.",
            labels=["operation"],
        )
        skipped = CounterMetricFamily(
            "wolkvox_skipped_seconds",
            "Seconds of records given up without counting them, because the poller was further "
            "behind than polling.max_catchup (a long outage or quota pause); backfill recovers "
            "them.",
            labels=["operation"],
        )
        last_skip = GaugeMetricFamily(
            "wolkvox_last_skip_timestamp_seconds",
            "Unix time at which the poller last gave up a span of records (see "
            "wolkvox_skipped_seconds_total); absent if it never did.",
            labels=["operation"],
        )
        build = GaugeMetricFamily(
            "wolkvox_exporter_build_info",
            "A metric with a constant 1 value labelled by the exporter's version.",
            labels=["version"],
        )
        build.add_metric([__version__], 1)
        if self.store is not None:
            state_failures = CounterMetricFamily(
                "wolkvox_state_save_failures",
                "Saves of the state file (state.path) that failed; while they fail, a restart "
                "resumes from the last good save and /-/ready answers 503.",
            )
            state_failures.add_metric([], self.store.save_failures)
            yield state_failures

        for s in snaps:
            op = s.name
            for key, n in s.interactions.items():
                interactions.add_metric([op, *key], n)
            for key, n in s.last_window.items():
                last_window.add_metric([op, *key], n)
            up.add_metric([op], 1 if s.up else 0)
            quota.add_metric([op], 1 if s.quota_exhausted else 0)
            if s.last_success is not None:
                last_success.add_metric([op], s.last_success)
            if s.collected_until is not None:
                until.add_metric([op], s.collected_until)
            for outcome, n in s.requests.items():
                requests.add_metric([op, outcome], n)
            buckets = [
                (str(b), float(v))
                for b, v in zip(DURATION_BUCKETS, s.duration_buckets, strict=False)
            ]
            buckets.append(("+Inf", float(s.duration_buckets[-1])))
            duration.add_metric([op], buckets, s.duration_sum)
            received.add_metric([op], s.received)
            duplicates.add_metric([op], s.duplicates)
            outside.add_metric([op], s.outside_range)
            if s.newest_record is not None:
                newest.add_metric([op], s.newest_record)
            for reason, n in s.rejected.items():
                rejected.add_metric([op, reason], n)
            for label, n in s.overflow.items():
                overflow.add_metric([op, label], n)
            # Every outcome of every channel with traffic, at 0 too: a ratio needs both sides.
            channels = sorted({k[0] for k in s.interactions})
            for ch in channels:
                for outcome in s.outcome_names:
                    outcomes.add_metric([op, ch, outcome], s.outcomes.get((ch, outcome), 0))
                sessions.add_metric([op, ch], s.sessions.get(ch, 0))
                transferred.add_metric([op, ch], s.sessions_transferred.get(ch, 0))
            for ch, n in s.customers_last_window.items():
                customers.add_metric([op, ch], n)
            if s.quota_limit is not None:
                quota_limit.add_metric([op], s.quota_limit)
            if s.quota_used is not None:
                quota_used.add_metric([op], s.quota_used)
            skipped.add_metric([op], s.skipped_seconds)
            if s.last_skip is not None:
                last_skip.add_metric([op], s.last_skip)

        yield from (
            interactions,
            last_window,
            up,
            last_success,
            until,
            requests,
            duration,
            received,
            duplicates,
            outside,
            newest,
            rejected,
            overflow,
            quota,
            outcomes,
            sessions,
            transferred,
            customers,
            quota_limit,
            quota_used,
            skipped,
            last_skip,
            build,
        )
