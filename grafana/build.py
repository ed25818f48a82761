"""The Grafana dashboards of grafana/dashboards/, described once.

`python3 prometheus/generate.py` writes them with the rest of the monitoring, from one configuration
(prometheus/monitoring.yaml); the test suite fails if the committed JSON differs from what it
writes, and runs every panel's query against a real Prometheus.

Plain dictionaries rather than a dashboard SDK: three dashboards of a dozen panels need a handful
of helpers, and the output is the schema Grafana's file provisioning reads, with fixed UIDs and a
datasource variable (no `__inputs`), so the same files work provisioned and imported.
"""

from __future__ import annotations

import json
from typing import Any

Panel = dict[str, Any]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every selector names the job and instance variables, so that several exporters (one per
# token group) on one Grafana never mix (the dashboard linter's target-job/instance rules).
JI = 'job=~"$job",instance=~"$instance"'
OP = f'{JI},operation=~"$operation"'
OP_CH = f'{OP},channel=~"$channel"'
OP_CH_RP = f'{OP_CH},rp_id=~"$rp_id"'
# The wolkvox_* counters move once per poll (5m by default), so their rates span at least
# three polls, whatever the scrape interval: fixed windows, listed in grafana/.lint with this
# reason. Counters that move continuously (process_*) use $__rate_interval.
RATE = "15m"


def target(expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
    }
    if instant:
        t["instant"] = True
        t["range"] = False
        t["format"] = "table"
    return t


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    unit: str = "short",
    **options: Any,
) -> Panel:
    x, y, w, h = grid
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
    }


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    unit: str = "short",
    stack: bool = False,
) -> Panel:
    p = panel(
        "timeseries",
        title,
        description,
        targets,
        grid,
        unit,
        legend={"displayMode": "table", "placement": "right", "calcs": ["mean", "lastNotNull"]},
        tooltip={"mode": "multi", "sort": "desc"},
    )
    p["fieldConfig"]["defaults"]["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 0,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "showPoints": "never",
    }
    return p


def stat(
    title: str,
    description: str,
    expr: str,
    grid: tuple[int, int, int, int],
    unit: str = "short",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Panel:
    p = panel(
        "stat",
        title,
        description,
        [target(expr)],
        grid,
        unit,
        reduceOptions={"calcs": ["lastNotNull"], "fields": "", "values": False},
        colorMode="value",
        graphMode="area",
        textMode="auto",
    )
    steps = thresholds or [(None, "green")]
    p["fieldConfig"]["defaults"]["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }
    return p


def table(
    title: str, description: str, expr: str, grid: tuple[int, int, int, int], value: str
) -> Panel:
    p = panel(
        "table",
        title,
        description,
        [target(expr, instant=True)],
        grid,
        showHeader=True,
        sortBy=[{"displayName": value, "desc": True}],
    )
    p["transformations"] = [
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "renameByName": {"Value": value},
            },
        }
    ]
    return p


def variable(name: str, label: str, query: str, all_value: str = ".*") -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,  # on time range change: operations and channels come and go
        "includeAll": True,
        "multi": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


DATASOURCE_VAR = {
    "type": "datasource",
    "name": "datasource",
    "label": "Data source",
    "query": "prometheus",
    "current": {},
    "refresh": 1,
}
# job and instance: ".+" for All, as the dashboard linter asks (a series always has both).
JOB_VAR = variable("job", "Job", "label_values(wolkvox_exporter_build_info, job)", ".+")
INSTANCE_VAR = variable(
    "instance",
    "Instance",
    'label_values(wolkvox_exporter_build_info{job=~"$job"}, instance)',
    ".+",
)
OPERATION_VAR = variable("operation", "Operation", f"label_values(wolkvox_up{{{JI}}}, operation)")
CHANNEL_VAR = variable(
    "channel", "Channel", f"label_values(wolkvox_interactions_total{{{OP}}}, channel)"
)
RP_VAR = variable(
    "rp_id", "Routing point", f"label_values(wolkvox_interactions_total{{{OP_CH}}}, rp_id)"
)

LINKS = [
    {
        "title": "Wolkvox",
        "type": "dashboards",
        "tags": ["wolkvox"],
        "asDropdown": False,
        "includeVars": True,
        "keepTime": True,
    }
]


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["wolkvox", "contact-center"],
        "timezone": "browser",
        "editable": False,  # provisioned: edits belong in build.py
        "graphTooltip": 1,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "5m",
        "schemaVersion": 39,
        "version": 1,
        "links": LINKS,
        "templating": {"list": [DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR, *variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


def transfer_ratio(by: str, window: str, selector: str) -> str:
    return (
        f"clamp_max(sum by ({by}) (increase(wolkvox_sessions_transferred_total{{{selector}}}"
        f"[{window}])) / (sum by ({by}) (increase(wolkvox_sessions_total{{{selector}}}"
        f"[{window}])) > 0), 1)"
    )


def share(matchers: str, by: str, window: str, selector: str) -> str:
    """The share of the sessions ended in `window` that `matchers` pick, summed `by`."""
    group = f"sum by ({by}) " if by else "sum "
    ended = f"wolkvox_sessions_ended_total{{{selector}}}"
    picked = f"wolkvox_sessions_ended_total{{{selector},{matchers}}}"
    return f"{group}(increase({picked}[{window}])) / ({group}(increase({ended}[{window}])) > 0)"


def overview() -> dict[str, Any]:
    overall_transfer = (
        f"clamp_max(sum(increase(wolkvox_sessions_transferred_total{{{OP_CH}}}[1h])) / "
        f"(sum(increase(wolkvox_sessions_total{{{OP_CH}}}[1h])) > 0), 1)"
    )
    panels = [
        stat(
            "Interactions per hour",
            "Routing records per hour over the last hour, all selected channels.",
            f"sum(rate(wolkvox_interactions_total{{{OP_CH}}}[1h])) * 3600",
            (0, 0, 4, 4),
        ),
        stat(
            "Sessions per hour",
            "Distinct chat sessions started per hour over the last hour.",
            f"sum(rate(wolkvox_sessions_total{{{OP_CH}}}[1h])) * 3600",
            (4, 0, 4, 4),
        ),
        stat(
            "Transfer rate (1h)",
            "Share of the last hour's sessions handed to an agent (first transfer of a session).",
            overall_transfer,
            (8, 0, 4, 4),
            "percentunit",
        ),
        stat(
            "Bot containment (1h)",
            "Share of the sessions that ended in the last hour with result contained: neither "
            "transferred nor abandoned (see Wolkvox / Conversations).",
            share('result="contained"', "", "1h", OP_CH),
            (12, 0, 4, 4),
            "percentunit",
            [(None, "red"), (0.5, "orange"), (0.7, "green")],
        ),
        stat(
            "Distinct customers (last window)",
            "Customers (by id, else phone, else e-mail) with records in the last complete "
            "polling window.",
            f"sum(wolkvox_customers_last_window{{{OP_CH}}})",
            (16, 0, 4, 4),
        ),
        stat(
            "API polls healthy",
            "Operations whose last poll of the Wolkvox API succeeded, out of those selected.",
            f"sum(wolkvox_up{{{OP}}}) / count(wolkvox_up{{{OP}}})",
            (20, 0, 4, 4),
            "percentunit",
            [(None, "red"), (1, "green")],
        ),
        timeseries(
            "Interactions by channel",
            f"Routing records per minute, averaged over {RATE} (three polls).",
            [
                target(
                    f"sum by (operation, channel) (rate(wolkvox_interactions_total{{{OP_CH}}}[{RATE}])) * 60",
                    "{{operation}} / {{channel}}",
                )
            ],
            (0, 4, 12, 8),
            "short",
            stack=True,
        ),
        timeseries(
            "Sessions by channel",
            f"Sessions started per hour, averaged over {RATE}.",
            [
                target(
                    f"sum by (operation, channel) (rate(wolkvox_sessions_total{{{OP_CH}}}[{RATE}])) * 3600",
                    "{{operation}} / {{channel}}",
                )
            ],
            (12, 4, 12, 8),
            "short",
            stack=True,
        ),
        timeseries(
            "Transfer rate by channel",
            "Share of sessions transferred to an agent, over the last hour.",
            [
                target(
                    transfer_ratio("operation, channel", "1h", OP_CH),
                    "{{operation}} / {{channel}}",
                )
            ],
            (0, 12, 12, 8),
            "percentunit",
        ),
        timeseries(
            "Bot containment by channel",
            "Share of the sessions that ended in the last hour with result contained: neither "
            "transferred nor abandoned.",
            [
                target(
                    share('result="contained"', "operation, channel", "1h", OP_CH),
                    "{{operation}} / {{channel}}",
                )
            ],
            (12, 12, 12, 8),
            "percentunit",
        ),
        timeseries(
            "Routing outcomes",
            "Routing records per hour by outcome (kpis.outcomes in the exporter's config).",
            [
                target(
                    f"sum by (outcome) (rate(wolkvox_routing_outcomes_total{{{OP_CH}}}[{RATE}])) * 3600",
                    "{{outcome}}",
                )
            ],
            (0, 20, 12, 8),
            "short",
            stack=True,
        ),
        table(
            "Top routing answers",
            "The ten most frequent routing answers in the selected time range (normalised: "
            "digits and e-mails masked, MaskedText payloads dropped).",
            f"topk(10, sum by (routing_answer) (increase(wolkvox_interactions_total{{{OP_CH}}}[$__range])))",
            (12, 20, 12, 8),
            "Records",
        ),
        timeseries(
            "Distinct customers per window",
            "Distinct customers with records in each complete polling window, by channel.",
            [
                target(
                    f"sum by (operation, channel) (wolkvox_customers_last_window{{{OP_CH}}})",
                    "{{operation}} / {{channel}}",
                )
            ],
            (0, 28, 24, 8),
        ),
    ]
    return dashboard(
        "wolkvox-overview",
        "Wolkvox / Overview",
        "Contact-center routing volume, sessions, transfer rate and bot containment.",
        [OPERATION_VAR, CHANNEL_VAR],
        panels,
    )


def routing_point() -> dict[str, Any]:
    panels = [
        timeseries(
            "Interactions by routing point",
            f"Routing records per minute by rp_id, averaged over {RATE}.",
            [
                target(
                    f"sum by (rp_id) (rate(wolkvox_interactions_total{{{OP_CH_RP}}}[{RATE}])) * 60",
                    "{{rp_id}}",
                )
            ],
            (0, 0, 12, 9),
            stack=True,
        ),
        timeseries(
            "Last complete window by routing point",
            "Routing records dated in the most recent complete polling window, by rp_id.",
            [
                target(
                    f"sum by (rp_id) (wolkvox_interactions_last_window{{{OP_CH_RP}}})",
                    "{{rp_id}}",
                )
            ],
            (12, 0, 12, 9),
        ),
        timeseries(
            "Routing answers at the selected routing points",
            f"Routing records per minute by routing answer, averaged over {RATE}.",
            [
                target(
                    f"sum by (routing_answer) (rate(wolkvox_interactions_total{{{OP_CH_RP}}}[{RATE}])) * 60",
                    "{{routing_answer}}",
                )
            ],
            (0, 9, 24, 10),
            stack=True,
        ),
        table(
            "Routing answers by routing point",
            "Records per routing point and answer in the selected time range.",
            f"sum by (rp_id, routing_answer) (increase(wolkvox_interactions_total{{{OP_CH_RP}}}[$__range])) > 0",
            (0, 19, 16, 10),
            "Records",
        ),
        stat(
            "transfer_skill share",
            "Share of the selected routing points' records whose answer is transfer_skill, over "
            "the last hour.",
            f'sum(rate(wolkvox_interactions_total{{{OP_CH_RP},routing_answer="transfer_skill"}}[1h])) '
            f"/ sum(rate(wolkvox_interactions_total{{{OP_CH_RP}}}[1h]))",
            (16, 19, 8, 10),
            "percentunit",
        ),
    ]
    return dashboard(
        "wolkvox-routing-point",
        "Wolkvox / Routing point",
        "Drill-down by routing point (rp_id): volume and the routing answers given.",
        [OPERATION_VAR, CHANNEL_VAR, RP_VAR],
        panels,
    )


def exporter_health() -> dict[str, Any]:
    panels = [
        timeseries(
            "API polls healthy (wolkvox_up)",
            "1 when the operation's last poll succeeded.",
            [target(f"wolkvox_up{{{OP}}}", "{{operation}}")],
            (0, 0, 12, 7),
        ),
        timeseries(
            "Collection lag",
            "How far behind now the counted records reach: about settle_delay plus one interval "
            "when healthy. The newest record counted lags a little more on a busy operation; "
            "an hour more (or a negative lag) is a wrong timezone: run check --connect.",
            [
                target(
                    f"time() - wolkvox_collected_until_timestamp_seconds{{{OP}}}",
                    "{{operation}} collected until",
                ),
                target(
                    f"time() - wolkvox_newest_record_timestamp_seconds{{{OP}}}",
                    "{{operation}} newest record",
                ),
            ],
            (12, 0, 12, 7),
            "s",
        ),
        timeseries(
            "API requests by outcome",
            "Requests to the Wolkvox reports API per hour, by outcome; each costs daily quota.",
            [
                target(
                    f"sum by (operation, outcome) (rate(wolkvox_api_requests_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} / {{outcome}}",
                )
            ],
            (0, 7, 12, 8),
            stack=True,
        ),
        timeseries(
            "API request latency",
            "Median and 95th percentile of request duration over the last hour.",
            [
                target(
                    "histogram_quantile(0.5, sum by (operation, le) "
                    f"(rate(wolkvox_api_request_duration_seconds_bucket{{{OP}}}[1h])))",
                    "{{operation}} p50",
                ),
                target(
                    "histogram_quantile(0.95, sum by (operation, le) "
                    f"(rate(wolkvox_api_request_duration_seconds_bucket{{{OP}}}[1h])))",
                    "{{operation}} p95",
                ),
            ],
            (12, 7, 12, 8),
            "s",
        ),
        timeseries(
            "Records received, duplicate and rejected",
            "Rows per hour: received (re-reads included), recognised as already counted, "
            "rejected by reason, counted although dated outside the range asked for, and "
            "counted after their window was published (late: raise settle_delay if steady).",
            [
                target(
                    f"sum by (operation) (rate(wolkvox_records_received_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} received",
                ),
                target(
                    f"sum by (operation) (rate(wolkvox_records_duplicate_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} duplicate",
                ),
                target(
                    f"sum by (operation, reason) (rate(wolkvox_records_rejected_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} rejected: {{reason}}",
                ),
                target(
                    f"sum by (operation) (rate(wolkvox_records_outside_range_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} dated outside the range asked",
                ),
                target(
                    f"sum by (operation) (rate(wolkvox_records_late_total{{{OP}}}[1h])) * 3600",
                    "{{operation}} late for their window",
                ),
            ],
            (0, 15, 12, 8),
        ),
        timeseries(
            "Label overflow",
            "Records folded into __other__ in the last hour because a label reached its cap.",
            [
                target(
                    f"sum by (operation, label) (increase(wolkvox_label_overflow_total{{{OP}}}[1h]))",
                    "{{operation}} / {{label}}",
                )
            ],
            (12, 15, 12, 8),
        ),
        timeseries(
            "Daily quota exhausted",
            "1 while the token is paused until the operation's next local day.",
            [target(f"wolkvox_quota_exhausted{{{OP}}}", "{{operation}}")],
            (0, 23, 8, 6),
        ),
        timeseries(
            "Daily quota used",
            "Share of the token's daily API calls used, from token_info (needs "
            "polling.token_info_interval).",
            [
                target(
                    f"wolkvox_token_quota_used{{{OP}}} / wolkvox_token_quota_limit{{{OP}}}",
                    "{{operation}}",
                )
            ],
            (8, 23, 8, 6),
            "percentunit",
        ),
        table(
            "Exporter version",
            "wolkvox_exporter_build_info of each scraped exporter.",
            f"wolkvox_exporter_build_info{{{JI}}}",
            (16, 23, 8, 6),
            "Value",
        ),
        timeseries(
            "Time given up uncounted",
            "Seconds of records the poller gave up because it was further behind than "
            "polling.max_catchup; a step up is a gap to backfill (see the WolkvoxDataSkipped "
            "runbook).",
            [target(f"wolkvox_skipped_seconds_total{{{OP}}}", "{{operation}}")],
            (0, 29, 12, 6),
            "s",
        ),
        timeseries(
            "Exporter CPU",
            "CPU seconds per second the exporter process uses (decoding answers, saving state, "
            "rendering scrapes).",
            [
                target(
                    f"rate(process_cpu_seconds_total{{{JI}}}[$__rate_interval])",
                    "{{instance}}",
                )
            ],
            (12, 29, 6, 6),
            "percentunit",
        ),
        timeseries(
            "Exporter memory",
            "Resident memory of the exporter process; it grows with the sessions remembered "
            "(kpis.session_horizon), not with uptime.",
            [target(f"process_resident_memory_bytes{{{JI}}}", "{{instance}}")],
            (18, 29, 6, 6),
            "bytes",
        ),
    ]
    return dashboard(
        "wolkvox-exporter-health",
        "Wolkvox / Exporter health",
        "Is wolkvox-exporter polling the Wolkvox API, how fast, and is anything being lost?",
        [OPERATION_VAR],
        panels,
    )


def heatmap(title: str, description: str, expr: str, grid: tuple[int, int, int, int]) -> Panel:
    """A histogram's buckets over time, as Grafana draws Prometheus buckets."""
    t = target(expr, "{{le}}")
    t["format"] = "heatmap"
    p = panel(
        "heatmap",
        title,
        description,
        [t],
        grid,
        calculate=False,
        yAxis={"axisPlacement": "left"},
        cellGap=1,
        color={"mode": "scheme", "scheme": "Oranges", "steps": 64},
        tooltip={"show": True, "yHistogram": True},
    )
    return p


def conversations() -> dict[str, Any]:
    ended = f"wolkvox_sessions_ended_total{{{OP_CH}}}"
    back = f'wolkvox_sessions_recontact_total{{{OP_CH},previous="contained"}}'
    contained_1d = share('result="contained"', "", "1d", OP_CH)
    panels = [
        stat(
            "Sessions ended per hour",
            "Sessions that ended in the last hour: kpis.session_timeout after their last record.",
            f"sum(increase({ended}[1h]))",
            (0, 0, 4, 4),
        ),
        stat(
            "Containment (1h)",
            "Share of the sessions ended in the last hour that the bot contained: no transfer, "
            "and its last word neither a question nor a fallback left unanswered.",
            share('result="contained"', "", "1h", OP_CH),
            (4, 0, 4, 4),
            "percentunit",
            [(None, "red"), (0.5, "orange"), (0.7, "green")],
        ),
        stat(
            "Containment without re-contact (1d)",
            "Of the sessions ended in the last day, the share contained whose customer did not "
            "come back within kpis.recontact_window (contained less re-contacts after one).",
            f"clamp_min(({contained_1d}) - sum(increase({back}[1d])) "
            f"/ (sum(increase({ended}[1d])) > 0), 0)",
            (8, 0, 4, 4),
            "percentunit",
            [(None, "red"), (0.4, "orange"), (0.6, "green")],
        ),
        stat(
            "Abandonment (1h)",
            "Share of the sessions ended in the last hour that the customer left while the bot "
            "waited for an answer (a question or a fallback, no transfer).",
            share('result="abandoned"', "", "1h", OP_CH),
            (12, 0, 4, 4),
            "percentunit",
            [(None, "green"), (0.2, "orange"), (0.35, "red")],
        ),
        stat(
            "Fallback rate (1h)",
            "Share of the sessions ended in the last hour in which the bot did not understand "
            "at least once (outcome fallback).",
            f"sum(increase(wolkvox_sessions_with_fallback_total{{{OP_CH}}}[1h])) "
            f"/ (sum(increase({ended}[1h])) > 0)",
            (16, 0, 4, 4),
            "percentunit",
            [(None, "green"), (0.15, "orange"), (0.3, "red")],
        ),
        stat(
            "Open sessions",
            "Sessions started and not ended yet.",
            f"sum(wolkvox_sessions_open{{{OP_CH}}})",
            (20, 0, 4, 4),
        ),
        timeseries(
            "Sessions ended by result",
            "Sessions ended per hour: transferred to an agent, contained by the bot, or "
            "abandoned while the bot waited.",
            [target(f"sum by (result) (increase({ended}[1h]))", "{{result}}")],
            (0, 4, 12, 8),
            stack=True,
        ),
        timeseries(
            "Containment by channel",
            "Share of the sessions ended in the last hour with result contained.",
            [
                target(
                    share('result="contained"', "operation, channel", "1h", OP_CH),
                    "{{operation}} / {{channel}}",
                )
            ],
            (12, 4, 12, 8),
            "percentunit",
        ),
        timeseries(
            "Abandonment by channel",
            "Share of the sessions ended in the last hour with result abandoned.",
            [
                target(
                    share('result="abandoned"', "operation, channel", "1h", OP_CH),
                    "{{operation}} / {{channel}}",
                )
            ],
            (0, 12, 12, 8),
            "percentunit",
        ),
        timeseries(
            "Fallback rate by channel",
            "Share of the sessions ended in the last hour with at least one fallback.",
            [
                target(
                    "sum by (operation, channel) (increase(wolkvox_sessions_with_fallback_total"
                    f"{{{OP_CH}}}[1h])) / (sum by (operation, channel) (increase({ended}[1h])) > 0)",
                    "{{operation}} / {{channel}}",
                )
            ],
            (12, 12, 12, 8),
            "percentunit",
        ),
        heatmap(
            "Turns per session",
            "How many records (customer messages) sessions took, by the hour they ended.",
            f"sum by (le) (increase(wolkvox_session_turns_bucket{{{OP_CH}}}[1h]))",
            (0, 20, 12, 8),
        ),
        heatmap(
            "Time in the bot",
            "First record to last, of the sessions ended, by the hour they ended (seconds).",
            f"sum by (le) (increase(wolkvox_session_duration_seconds_bucket{{{OP_CH}}}[1h]))",
            (12, 20, 12, 8),
        ),
        timeseries(
            "Turns per session, p50 and p90",
            "Median and 90th percentile of the turns of the sessions ended in the last hour.",
            [quantile(q, "wolkvox_session_turns", "") for q in ("0.5", "0.9")],
            (0, 28, 12, 8),
        ),
        timeseries(
            "Time in the bot, p50 and p90",
            "Median and 90th percentile of the duration of the sessions ended in the last hour.",
            [quantile(q, "wolkvox_session_duration_seconds", "") for q in ("0.5", "0.9")],
            (12, 28, 12, 8),
            "s",
        ),
        timeseries(
            "Time to an agent by channel, p50 and p90",
            "First record to the first transfer, of the transferred sessions ended in the last "
            "hour, by channel.",
            [
                quantile(q, "wolkvox_session_time_to_transfer_seconds", "channel")
                for q in ("0.5", "0.9")
            ],
            (0, 36, 12, 8),
            "s",
        ),
        timeseries(
            "Re-contacts by earlier result",
            "Sessions per hour whose customer had a session ending within "
            "kpis.recontact_window before, by that session's result: contained ones that come "
            "back were not really contained.",
            [
                target(
                    "sum by (previous) (increase(wolkvox_sessions_recontact_total"
                    f"{{{OP_CH}}}[1h]))",
                    "after {{previous}}",
                )
            ],
            (12, 36, 12, 8),
            stack=True,
        ),
    ]
    return dashboard(
        "wolkvox-conversations",
        "Wolkvox / Conversations",
        "What the bot does with a conversation: results, turns, time in the bot and to an "
        "agent, abandonment, fallbacks and re-contacts, each session counted once it ended.",
        [OPERATION_VAR, CHANNEL_VAR],
        panels,
    )


def quantile(q: str, name: str, by: str) -> dict[str, Any]:
    keys = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} p{int(float(q) * 100)}" if by else f"p{int(float(q) * 100)}"
    return target(
        f"histogram_quantile({q}, sum by ({keys}) (increase({name}_bucket{{{OP_CH}}}[1h])))",
        legend,
    )


DASHBOARDS = {
    "overview.json": overview,
    "conversations.json": conversations,
    "routing-point.json": routing_point,
    "exporter-health.json": exporter_health,
}


def render(selector: str = "") -> dict[str, str]:
    """Every dashboard's JSON text by file name. `selector` (a PromQL matcher list, e.g.
    job="wolkvox") narrows the job variable to the exporter's own jobs."""
    out = {}
    for name, build in DASHBOARDS.items():
        board = build()
        if selector:
            for var in board["templating"]["list"]:
                if var["name"] == "job":
                    query = f"label_values(wolkvox_exporter_build_info{{{selector}}}, job)"
                    var["query"] = {**var["query"], "query": query}
                    var["definition"] = query
        out[name] = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
    return out
