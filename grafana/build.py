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
            "Share of the last hour's sessions the bot resolved without a transfer.",
            f"1 - ({overall_transfer})",
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
            "Share of sessions the bot resolved without a transfer, over the last hour.",
            [
                target(
                    f"1 - {transfer_ratio('operation, channel', '1h', OP_CH)}",
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


DASHBOARDS = {
    "overview.json": overview,
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
