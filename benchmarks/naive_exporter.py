"""The exporter a user would write in an afternoon, kept as the baseline of `versus_naive.py`.

Written the obvious way on purpose: `requests.get` every interval, `json.loads`, one
`Counter.labels(...).inc()` per row labelled by the raw channel, rp_id and routing answer,
`start_http_server`; no dedupe, no state, no KPIs. Each window is read once, `settle` seconds
after it ends. Do not optimise it: it stands for what we are compared with.

    python -m benchmarks.naive_exporter --port 9000 --interval 5 --settle 1 \
        --operation op0=http://127.0.0.1:8080/op0,token-0 [--operation ...]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import requests
from prometheus_client import Counter, start_http_server

INTERACTIONS = Counter(
    "naive_interactions",
    "Routed interactions",
    ["operation", "channel", "rp_id", "routing_answer"],
)
ERRORS = Counter("naive_errors", "Failed polls", ["operation"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--settle", type=int, default=60)
    parser.add_argument("--timezone", default="America/Bogota")
    parser.add_argument("--operation", action="append", required=True, help="name=url,token")
    args = parser.parse_args()
    zone = ZoneInfo(args.timezone)
    operations = []
    for spec in args.operation:
        name, rest = spec.split("=", 1)
        url, token = rest.rsplit(",", 1)
        operations.append((name, url + "/api/v2/reports_manager.php", token))

    start_http_server(args.port, addr="127.0.0.1")
    now = int(time.time())
    start = now - now % args.interval - args.interval
    while True:
        end = start + args.interval
        wait = end + args.settle - time.time()
        if wait > 0:
            time.sleep(wait)
        for name, url, token in operations:
            params = {
                "api": "diagram_9",
                "date_ini": datetime.fromtimestamp(start, zone).strftime("%Y%m%d%H%M%S"),
                "date_end": datetime.fromtimestamp(end - 1, zone).strftime("%Y%m%d%H%M%S"),
            }
            try:
                response = requests.get(
                    url, params=params, headers={"wolkvox-token": token}, timeout=60
                )
                payload = response.json()
            except (requests.RequestException, ValueError):
                ERRORS.labels(name).inc()
                continue
            for row in payload.get("data") or []:
                INTERACTIONS.labels(name, row["channel"], row["rp_id"], row["routing_answer"]).inc()
        start = end


if __name__ == "__main__":
    main()
