"""The used-by chain with the real parts: a real Prometheus scrapes the exporter over TLS with
basic auth (its own tls_config and basic_auth), evaluates the generated alerts (durations
shortened for the test only), and a real Alertmanager (Debian's prometheus-alertmanager) routes
them, with the shipped inhibition, to a webhook receiver in this test.

An operation that polled fine and then gets a wrong token by a reload must arrive as
WolkvoxApiFailing for that operation only, with a summary, a description naming it and an
absolute runbook URL whose section exists; its WolkvoxDataStale fires in Prometheus but is
inhibited; when the exporter stops, WolkvoxExporterAbsent arrives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.tools import simulator
from exporter.tools.simulator import Traffic
from tests.support.harness import required_binary
from tests.support.pki import https_opener, make_pki
from tests.support.process import Exporter, free_port

ROOT = Path(__file__).parent.parent.parent
PASSWORD = "scrape-secret-42"

# The generated alerts, with durations a test can wait for.
TUNED = """selector: job="wolkvox"
alerts:
  exporter_absent_for: 10s
  api_failing_for: 10s
  stale_after: 15s
  stale_for: 5s
"""


class Webhook:
    """An Alertmanager webhook receiver: every alert it was sent, as Alertmanager sent it."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [
            a
            for a in list(self.alerts)
            if a["labels"]["alertname"] == alertname and a["status"] == "firing"
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait(condition: Callable[[], Any], what: str, timeout: float, logs: list[Path]) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs if p.exists())
    pytest.fail(f"{what}\n{tails}")


def start(binary: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen([binary, *args], stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_a_wrong_token_pages_for_its_operation_only_and_a_stopped_exporter_is_missed(
    tmp_path: Path, webhook: Webhook
) -> None:
    prometheus = required_binary("prometheus")
    alertmanager = required_binary("prometheus-alertmanager", "prometheus-alertmanager")
    pki = make_pki(tmp_path / "pki")
    # The generated rules and alerts, tuned as a team would tune them.
    (tmp_path / "tuned.yaml").write_text(TUNED)
    made = subprocess.run(
        [
            sys.executable,
            str(ROOT / "prometheus" / "generate.py"),
            "--config",
            str(tmp_path / "tuned.yaml"),
            "--out",
            str(tmp_path / "monitoring"),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    rules = tmp_path / "monitoring" / "prometheus"

    # The simulated API, with two operations on tokens of their own.
    now = int(time.time())
    tenants = {
        name: Traffic(seed=i, rate_per_minute=120, daily_curve=False, start=now - 3600)
        for i, name in enumerate(("steady", "flaky"), start=1)
    }
    sim = simulator.Simulator(tenants, {"tok-steady", "tok-flaky"}, latency=0.005)
    srv, url = simulator.serve(sim, poll_interval=0.02)
    token_file = tmp_path / "flaky.token"
    token_file.write_text("tok-flaky\n")

    # The exporter, serving over TLS with basic auth.
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "operations": [
                    {"name": "steady", "base_url": f"{url}/steady", "token": "tok-steady"},
                    {"name": "flaky", "base_url": f"{url}/flaky", "token_file": str(token_file)},
                ],
                "polling": {
                    "interval": "2s",
                    "settle_delay": "1s",
                    "lookback": "2s",
                    "request_spacing": "10ms",
                    "retries": 0,
                    "timeout": "2s",
                },
            }
        )
    )
    exporter = Exporter(tmp_path, ["--config", str(cfg), "--web.config.file", str(web)]).start()

    # Alertmanager: the shipped routes, receivers and inhibition, its receivers pointed at
    # this test and its waits shortened.
    am_port = free_port()
    am_config = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    am_config["templates"] = [str(ROOT / "prometheus" / "wolkvox.tmpl")]
    am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in am_config["receivers"]:
        receiver["webhook_configs"][0]["url"] = webhook.url
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    am = start(
        alertmanager,
        [
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )

    # Prometheus, scraping with its own TLS and basic auth, alerting to that Alertmanager.
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules / "rules.yaml"), str(rules / "alerts.yaml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "wolkvox",
                        "scheme": "https",
                        "tls_config": {"ca_file": str(pki / "ca.crt"), "server_name": "localhost"},
                        "basic_auth": {"username": "prometheus", "password": PASSWORD},
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
        )
    )
    prom = start(
        prometheus,
        [
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    logs = [tmp_path / n for n in ("exporter.log", "prometheus.log", "alertmanager.log")]

    def query(expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{prom_port}/api/v1/query?{params}", timeout=5
            ) as r:
                return list(json.loads(r.read())["data"]["result"])
        except OSError:
            return []

    def prometheus_alerts(state: str) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{prom_port}/api/v1/alerts", timeout=5
            ) as r:
                return [a for a in json.loads(r.read())["data"]["alerts"] if a["state"] == state]
        except OSError:
            return []

    try:
        # Both operations poll fine, as Prometheus sees it through TLS and basic auth.
        wait(
            lambda: len([s for s in query('wolkvox_up{job="wolkvox"} == 1')]) == 2,
            "Prometheus never saw both operations up",
            60,
            logs,
        )
        # The flaky operation gets a wrong token, by a reload of its token file.
        token_file.write_text("tok-wrong\n")
        opener = https_opener(pki, user=("prometheus", PASSWORD))
        request = urllib.request.Request(
            f"https://localhost:{exporter.port}/-/reload", method="POST"
        )
        with opener.open(request, timeout=30) as answer:
            assert answer.status == 200

        paged = wait(
            lambda: webhook.firing("WolkvoxApiFailing"),
            "WolkvoxApiFailing never reached the receiver",
            90,
            logs,
        )
        assert {a["labels"]["operation"] for a in paged} == {"flaky"}
        (alert,) = paged[:1]
        notes = alert["annotations"]
        assert notes["summary"] == "Wolkvox API polls are failing."
        assert "operation flaky" in notes["description"]
        runbook = notes["runbook_url"]
        assert runbook.startswith("https://") and runbook.endswith("#wolkvoxapifailing")
        sections = re.findall(r"^## (\S+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
        assert runbook.rsplit("#", 1)[1] in {s.lower() for s in sections}
        assert alert["labels"]["severity"] == "critical"

        # Its stale data fires in Prometheus, and the inhibition keeps it from the receiver.
        wait(
            lambda: [
                a
                for a in prometheus_alerts("firing")
                if a["labels"]["alertname"] == "WolkvoxDataStale"
            ],
            "WolkvoxDataStale never fired in Prometheus",
            90,
            logs,
        )
        time.sleep(4)  # several Alertmanager group intervals
        assert webhook.firing("WolkvoxDataStale") == []
        assert all(a["labels"]["operation"] == "flaky" for a in webhook.firing("WolkvoxApiFailing"))

        # The exporter stops: its absence arrives.
        assert exporter.stop() == 0
        missed = wait(
            lambda: webhook.firing("WolkvoxExporterAbsent"),
            "WolkvoxExporterAbsent never reached the receiver",
            90,
            logs,
        )
        assert missed[0]["annotations"]["runbook_url"].endswith("#wolkvoxexporterabsent")
    finally:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.kill()
        for proc in (prom, am):
            proc.terminate()
            proc.wait(timeout=15)
        srv.shutdown()
        srv.server_close()
