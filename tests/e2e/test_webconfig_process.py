"""The web config as promtool and a running exporter process read it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.support.harness import promtool
from tests.support.process import free_port
from tests.unit.test_webconfig import (
    HASH,
    PASSWORD,
    SERVER,
    TABLE,
    Client,
    request,
    write_case,
)

DEMO = (sys.executable, "-m", "exporter.cli", "--demo")
CHECK = (sys.executable, "-m", "exporter.cli", "check", "--config")


def test_promtool_agrees_on_every_file_it_understands(pki):
    """promtool (of the installed Prometheus) and our check give the same verdict on each
    file of the table, except the rows that differ on purpose and keys newer than its
    exporter-toolkit (reported as unknown fields)."""
    cfg = pki / "exporter.yml"
    cfg.write_text("operations:\n  - {name: a, base_url: 'http://127.0.0.1:1', token: t}\n")
    compared = 0
    for case in TABLE:
        path = write_case(pki, case)
        proc = subprocess.run(
            [promtool(), "check", "web-config", str(path)], capture_output=True, text=True
        )
        if "not found in type" in proc.stdout + proc.stderr:
            continue  # a key this promtool's toolkit does not know
        ours = subprocess.run(
            [*CHECK, str(cfg), "--web.config.file", str(path)],
            capture_output=True,
            text=True,
        )
        if case.differs:
            continue
        assert (proc.returncode == 0) == (ours.returncode == 0), (
            case.name,
            proc.stdout + proc.stderr,
            ours.stdout + ours.stderr,
        )
        compared += 1
    assert compared >= 30


def test_sighup_rereads_the_web_config_and_keeps_the_process(pki):
    """SIGHUP, which kills a process by default, re-reads the web config instead."""
    d = pki / "sighup"
    d.mkdir()
    path, log = d / "web.yml", d / "exporter.log"
    path.write_text(f"basic_auth_users:\n  dave: {HASH}\n")
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*DEMO, "--web.config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 20
        while time.time() < deadline and "wolkvox-exporter started" not in log.read_text():
            time.sleep(0.1)
        time.sleep(1.0)  # the signal handlers are installed just after the start line
        path.write_text(f"basic_auth_users:\n  eve: {HASH}\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "reason=SIGHUP" not in log.read_text():
            time.sleep(0.1)
        assert "web config reloaded" in log.read_text() and "reason=SIGHUP" in log.read_text()
        assert request(port, pki, Client(tls=False, user="eve"))[0] == 200
        assert request(port, pki, Client(tls=False, user="dave"))[0] == 401
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0, log.read_text()


def test_the_exporter_serves_tls_and_auth_from_the_flag(pki):
    path = pki / "full.yml"
    path.write_text(
        SERVER
        + '  client_auth_type: "VerifyClientCertIfGiven"\n  client_ca_file: "ca.crt"\n'
        + "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        + f"basic_auth_users:\n  dave: {HASH}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.cli",
            "--demo",
            "--web.config.file",
            str(path),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        status: str | int = "tls"
        deadline = time.time() + 20
        while time.time() < deadline and status != 200:
            status, headers = request(port, pki, Client(user="dave", path="/metrics"))
            time.sleep(0.2)
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        assert request(port, pki, Client(path="/metrics"))[0] == 401
        assert request(port, pki, Client(cert="client", user="dave"))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert PASSWORD.encode() not in out
