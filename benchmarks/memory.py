"""Memory: ingest 1,000,000 records over many 5-minute windows; peak RSS must stay flat.

Target (issue 5): peak RSS grows by less than 20 MB between the first 100,000 records and the
millionth, because dedupe memory is bounded by the look-back horizon, not by uptime. Each poll
re-reads the previous window (lookback 5m), as the live exporter does.

Remembered sessions are bounded by kpis.session_horizon instead (default 24h), and re-contact
customers by kpis.recontact_window plus that horizon. The run covers about sixteen hours, so it
uses a 1h horizon and a 1h window to show the plateau; the figure per session it prints sizes
the default: sessions per day times that (benchmarks/conversations.py measures a day of 1M
open sessions and 300k customers).
"""

from __future__ import annotations

import json
import random

from benchmarks.common import T0, ZONE, machine, rss_kib
from exporter.api.records import decode
from exporter.counting.tally import Tally
from exporter.tools.simulator import Traffic
from tests.support.harness import operation_settings

TOTAL = 1_000_000
INTERVAL = 300
RATE = 1000  # records per minute: 5,000 per window, so 100k records outlast the 1h session horizon


def main() -> None:
    idle = rss_kib("VmRSS")
    traffic = Traffic(seed=3, zone=ZONE, rate_per_minute=RATE, daily_curve=False)
    tally = Tally(
        operation_settings(
            interval=f"{INTERVAL}s",
            kpis={"session_horizon": "1h", "session_timeout": "30m", "recontact_window": "1h"},
        )
    )
    rows_by_minute: dict[int, list[dict[str, object]]] = {}
    rng = random.Random(1)
    counted = 0
    peak_at_100k = None
    cursor = T0
    while counted < TOTAL:
        end = cursor + INTERVAL
        first = cursor - INTERVAL - 1  # the look-back re-read rides in the same request
        for minute in range(cursor, end, 60):
            rows_by_minute[minute] = [r.record for r in traffic.minute(minute)]
        data = [
            rec for m in range(first - first % 60, end, 60) for rec in rows_by_minute.get(m, [])
        ]
        rng.shuffle(data)
        body = json.dumps(
            {"code": "200", "msg": f"{len(data)} records were found", "data": data}
        ).encode()
        counted += tally.ingest(decode(body), first, end - 1).counted
        tally.forget_before(cursor - INTERVAL - 1)
        tally.publish(cursor, end + 60, cursor - 3 * INTERVAL)
        tally.saved()  # as each poll's save (or, without a state file, its commit) does
        for minute in [m for m in rows_by_minute if m < cursor - INTERVAL - 60]:
            del rows_by_minute[minute]
        traffic.forget_before(end)  # the simulator's own cache, not the exporter's memory
        cursor = end
        if peak_at_100k is None and counted >= 100_000:
            peak_at_100k = rss_kib("VmHWM")
    assert peak_at_100k is not None
    peak = rss_kib("VmHWM")
    growth = (peak - peak_at_100k) / 1024
    print(f"machine: {machine()}")
    print(f"records counted: {counted} over {(cursor - T0) // INTERVAL} windows")
    print(f"idle RSS (after imports): {idle / 1024:.1f} MB")
    print(
        f"peak RSS after 100k records: {peak_at_100k / 1024:.1f} MB; after {counted}: {peak / 1024:.1f} MB"
    )
    print(f"growth: {growth:.1f} MB  target < 20 MB")
    print(f"fingerprints retained: {len(tally.seen)} (one look-back horizon)")
    print(f"sessions retained: {len(tally.sessions)} (one session horizon, 1h here)")
    print(f"memory per remembered session: about {session_bytes():.0f} bytes")
    print(
        f"conversations open: {len(tally.conversations)}; customers kept: {len(tally.conversations.recontacts)}"
    )
    print("a day of 1M open sessions and 300k customers: python -m benchmarks.conversations")


def session_bytes(n: int = 200_000) -> float:
    """Measured, not estimated: the RSS a Sessions store takes for n sessions."""
    from exporter.counting.seen import Sessions

    before = rss_kib("VmRSS")
    store = Sessions()
    store.admit({i * 2654435761 % 2**64: "whatsapp" for i in range(n)}, set(), T0)
    return (rss_kib("VmRSS") - before) * 1024 / len(store)


if __name__ == "__main__":
    main()
