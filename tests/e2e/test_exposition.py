"""/metrics checked by promtool and served by a real server with process metrics at every scrape."""

from __future__ import annotations

import gzip
import re
import subprocess

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition import server
from exporter.exposition.collector import WolkvoxCollector
from exporter.tools.simulator import Traffic
from tests.support.harness import Clock, make_config, make_poller, promtool
from tests.unit.test_server import START, get, poll


def test_metrics_are_valid_for_promtool_and_the_parser(running, tmp_path):
    poll(running)
    status, headers, body = get(running["base"] + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "wolkvox_interactions",
        "wolkvox_interactions_last_window",
        "wolkvox_up",
        "wolkvox_last_success_timestamp_seconds",
        "wolkvox_collected_until_timestamp_seconds",
        "wolkvox_api_requests",
        "wolkvox_api_request_duration_seconds",
        "wolkvox_records_received",
        "wolkvox_records_duplicate",
        "wolkvox_records_rejected",
        "wolkvox_label_overflow",
        "wolkvox_quota_exhausted",
        "wolkvox_exporter_build_info",
    ):
        assert name in families, name
    assert "polled every 5m in the background" in families["wolkvox_interactions"].documentation
    total = sum(s.value for s in families["wolkvox_interactions"].samples)
    assert total == sum(running["poller"].snapshot().counts.interactions.values()) > 0
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_process_metrics_are_live_on_every_scrape_after_the_cached_part(sim_factory):
    """process_* change between two polls, so they are rendered per scrape and appended: one
    `# EOF` at the end of OpenMetrics, and a second gzip member that decoders read as one."""
    from prometheus_client import ProcessCollector

    clock = Clock(START)
    _, url = sim_factory(Traffic(seed=21, rate_per_minute=120), clock)
    poller = make_poller(make_config(url), clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WolkvoxCollector([poller], 300))
    live = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=live)
    scrapes = 0

    class CountingLive:
        def collect(self):  # a live collector is called on every scrape
            nonlocal scrapes
            scrapes += 1
            return iter(())

    live.register(CountingLive())
    httpd, _ = server.serve(server.App(registry, [poller], live=live), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    try:
        poll({"clock": clock, "poller": poller}, 1)
        for _ in range(3):
            text = get(base)[2].decode()
            names = {f.name for f in text_string_to_metric_families(text)}
            assert {"wolkvox_up", "process_resident_memory_bytes"} <= names
        assert scrapes == 3
        om = get(base, {"Accept": "application/openmetrics-text; version=1.0.0"})[2].decode()
        assert om.count("# EOF") == 1 and om.endswith("# EOF\n")
        types = set(re.findall(r"^# TYPE (\w+)", om, re.M))
        assert {"wolkvox_up", "process_resident_memory_bytes"} <= types
        zipped = get(base, {"Accept-Encoding": "gzip"})[2]
        assert "process_resident_memory_bytes" in gzip.decompress(zipped).decode()
        check = subprocess.run(
            [promtool(), "check", "metrics"], input=get(base)[2], capture_output=True
        )
        assert check.returncode == 0, check.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
