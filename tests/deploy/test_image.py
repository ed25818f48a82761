"""The container image, built from our Dockerfile and run, with buildah.

No registry is reachable here, so the base image is a local stand-in assembled by
deploy/image/local-base.sh (Debian's python3 in a root file system made by mmdebstrap) and
substituted through the Dockerfile's BASE_IMAGE argument. Everything after FROM is the real
Dockerfile: the virtual environment, the user, the health check. The container runs with the
host's network (buildah's chroot isolation), as the image's own user, and the image's own
HEALTHCHECK command runs inside it, read from the built image's configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.support.pki import https_opener, make_pki
from tests.support.process import free_port, parse

ROOT = Path(__file__).parent.parent.parent
BASE = "localhost/wolkvox-test-base:bookworm"
IMAGE = "localhost/wolkvox-exporter:test"
WEB_DIR = "/etc/wolkvox-exporter/web"

# One worker builds the image once and runs every test of it.
pytestmark = pytest.mark.xdist_group("image")


def _needs() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    why = ""
    if missing:
        why = f"{' and '.join(missing)} not installed (Debian: apt-get install buildah mmdebstrap)"
    elif os.geteuid() != 0:
        why = "building a base root file system with mmdebstrap needs root"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must build the image: {why}")
        pytest.skip(why)


def buildah(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"buildah {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def image() -> dict[str, object]:
    """Builds the image (and the base, unless this machine has it already); returns its
    Docker-format configuration."""
    _needs()
    have_base = subprocess.run(["buildah", "inspect", "--type", "image", BASE], capture_output=True)
    if have_base.returncode != 0:
        proc = subprocess.run(
            ["bash", str(ROOT / "deploy" / "image" / "local-base.sh"), BASE],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    buildah(
        "bud",
        "--quiet",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--pull=never",
        "--format",
        "docker",  # OCI images have no HEALTHCHECK
        "--layers=false",
        "--build-arg",
        f"BASE_IMAGE={BASE}",
        "-t",
        IMAGE,
        str(ROOT),
    )
    inspected = json.loads(buildah("inspect", "--type", "image", IMAGE))
    config: dict[str, object] = inspected["Docker"]["config"]
    return config


@pytest.fixture
def container(image: dict[str, object]) -> Iterator[str]:
    name = buildah("from", "--pull=never", IMAGE)
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


class Running:
    """The image's entrypoint running in a container, as the image's user."""

    def __init__(self, container: str, args: list[str], env: dict[str, str]) -> None:
        self.container = container
        self.env = env
        self.proc = subprocess.Popen(
            self._run(["wolkvox-exporter", *args]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _run(self, argv: list[str]) -> list[str]:
        flags = [f"--env={k}={v}" for k, v in self.env.items()]
        return [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            *flags,
            self.container,
            "--",
            *argv,
        ]

    def exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._run(argv),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return out


def health_command(image: dict[str, object]) -> list[str]:
    check = image["Healthcheck"]
    assert isinstance(check, dict), "the image has no HEALTHCHECK (built in OCI format?)"
    test = check["Test"]
    assert test[0] == "CMD", test
    return list(test[1:])


def wait_for(url: str, opener: urllib.request.OpenerDirector, running: Running) -> str:
    deadline = time.time() + 60
    while True:
        try:
            with opener.open(url, timeout=5) as answer:
                body: str = answer.read().decode()
                up = parse(body).get("wolkvox_up", {})
                if up and all(v == 1 for v in up.values()):  # every operation polled
                    return body
        except OSError:
            pass
        assert running.proc.poll() is None, running.stop()
        assert time.time() < deadline, f"no metrics at {url}"
        time.sleep(0.5)


def test_the_image_runs_as_its_own_user_and_its_health_check_follows_the_exporter(
    image: dict[str, object], container: str
) -> None:
    assert image["User"] == "10001"
    port = free_port()
    # The health check follows the listen address's host, not only its port.
    running = Running(
        container, ["--demo"], {"WOLKVOX_EXPORTER_LISTEN_ADDRESS": f"127.0.0.3:{port}"}
    )
    try:
        body = wait_for(f"http://127.0.0.3:{port}/metrics", urllib.request.build_opener(), running)
        samples = parse(body)
        assert samples["wolkvox_exporter_build_info"]
        assert all(v == 1 for v in samples["wolkvox_up"].values())
        assert running.exec(["id", "-u"]).stdout.strip() == "10001"
        # The exporter process itself runs as the image's user, seen from the host.
        pids = subprocess.run(
            ["pgrep", "-f", "wolkvox-exporter --demo"], capture_output=True, text=True
        )
        owners = {Path(f"/proc/{pid}").stat().st_uid for pid in pids.stdout.split()}
        assert 10001 in owners, owners
        healthy = running.exec(health_command(image))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "HTTP 200" in healthy.stdout
    finally:
        log = running.stop()
    assert "Traceback" not in log, log
    unhealthy = running.exec(health_command(image))
    assert unhealthy.returncode == 1, unhealthy.stdout + unhealthy.stderr
    assert "nothing listens on 127.0.0.3" in unhealthy.stdout


@pytest.mark.parametrize(
    ("client_auth", "verdict"),
    [
        ("", "basic auth required (HTTP 401)"),
        (
            '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: ca.crt\n',
            "alive, TLS answered",
        ),
    ],
    ids=["tls-basic-auth", "tls-client-cert"],
)
def test_the_health_check_passes_behind_tls_and_basic_auth_without_credentials(
    image: dict[str, object], container: str, tmp_path: Path, client_auth: str, verdict: str
) -> None:
    pki = make_pki(tmp_path / "pki")
    web = tmp_path / "web"
    web.mkdir()
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(pki / name, web / name)
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    (web / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        + client_auth
        + f'basic_auth_users:\n  prometheus: "{password_hash}"\n'
    )
    buildah("copy", "--chown", "10001", container, str(web), WEB_DIR)
    port = free_port()
    running = Running(
        container,
        ["--demo", "--web.config.file", f"{WEB_DIR}/web.yml"],
        {"WOLKVOX_EXPORTER_LISTEN_ADDRESS": f":{port}"},
    )
    try:
        opener = https_opener(pki, client_cert=bool(client_auth), user=("prometheus", "s3cret"))
        wait_for(f"https://127.0.0.1:{port}/metrics", opener, running)
        healthy = running.exec(health_command(image))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert verdict in healthy.stdout
    finally:
        log = running.stop()
    assert "Traceback" not in log, log
    assert running.exec(health_command(image)).returncode == 1
