"""The container image and the demo stack. No Docker engine runs in CI, so what can be checked
without one is checked for real: the image's health check command against a live exporter, the
build stage's inputs producing a working wheel, Prometheus' config with promtool, and every path,
port and service name the compose file wires together."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import promtool
from tests.process import Exporter, free_port

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def instructions(name: str) -> list[str]:
    """Arguments of every Dockerfile instruction `name`, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.M)]


def healthcheck(port_env: str) -> int:
    command = instructions("HEALTHCHECK")[0].split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[0] == "python"
    env = {**os.environ, "WOLKVOX_EXPORTER_LISTEN_ADDRESS": port_env}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True).returncode


def test_image_is_slim_runs_as_non_root_and_reads_the_documented_config_path():
    bases = instructions("FROM")
    assert all(re.match(r"python:3\.\d+-slim", b) for b in bases), bases
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["wolkvox-exporter"]
    assert json.loads(instructions("CMD")[-1]) == [
        "--config",
        "/etc/wolkvox-exporter/config.yaml",
    ]
    assert "9856" in instructions("EXPOSE")
    for copy in instructions("COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert "/etc/wolkvox-exporter/config.yaml" in (ROOT / "README.md").read_text()


@pytest.mark.e2e
def test_the_images_health_check_passes_on_a_live_exporter_and_fails_without_one(tmp_path):
    exporter = Exporter(tmp_path, ["--demo"]).start()
    try:
        deadline = time.time() + 30
        while healthcheck(f":{exporter.port}") != 0:
            assert time.time() < deadline, exporter.log()
            time.sleep(0.5)
    finally:
        exporter.stop()
    assert healthcheck(f":{free_port()}") != 0


def test_the_build_stage_inputs_make_a_working_wheel(tmp_path):
    """What the build stage copies (read from the Dockerfile's first stage) is enough
    for a wheel, which carries the licence text."""
    src = tmp_path / "src"
    src.mkdir()
    build_stage = re.sub(r"\\\n\s*", " ", DOCKERFILE).split("\nFROM ")[1]
    copies = re.findall(r"^COPY\s+(.+)$", build_stage, re.M)
    assert copies
    for copy in copies:
        *sources, _ = copy.split()
        for source in sources:
            subprocess.run(["cp", "-r", str(ROOT / source), str(src / source)], check=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("wolkvox_exporter-*.whl")
    listing = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    assert "exporter/cli.py" in listing and "entry_points.txt" in listing
    assert "licenses/LICENSE" in listing


def test_compose_prometheus_config_is_valid_and_scrapes_the_exporter_service():
    proc = subprocess.run(
        [promtool(), "check", "config", str(ROOT / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert targets == ["wolkvox-exporter:9856"]
    (am,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in COMPOSE["services"]


def test_compose_wires_the_demo_stack_from_files_in_the_repo():
    services = COMPOSE["services"]
    assert set(services) == {"wolkvox-exporter", "prometheus", "alertmanager", "grafana"}
    assert services["wolkvox-exporter"]["command"] == ["--demo"]
    assert "9856:9856" in services["wolkvox-exporter"]["ports"]
    mounts: dict[str, str] = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
                mounts[target] = source
    prometheus_args = " ".join(services["prometheus"]["command"])
    config_path = re.search(r"--config.file=(\S+)", prometheus_args)
    assert config_path and config_path.group(1) == "/etc/prometheus/wolkvox/prometheus.yml"
    assert mounts["/etc/prometheus/wolkvox"] == "./prometheus"
    # Grafana: provisioning reads the dashboards from where the compose file mounts them.
    provider = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "wolkvox.yaml").read_text()
    )["providers"][0]
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).exists()
    assert home.startswith(provider["options"]["path"])
    datasource = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    alertmanager = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in alertmanager["receivers"]}
    assert alertmanager["route"]["receiver"] in receivers
