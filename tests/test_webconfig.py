"""TLS and basic auth from an exporter-toolkit web config file, checked with promtool too."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from exporter import config, server, webconfig
from tests.conftest import promtool
from tests.process import free_port

PASSWORD = "s3cret-pass"


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any] | None, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0] if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(
    path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None
) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca=True)
    _write(d / "ca", ca)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d / name, _cert(name, key, (ca.subject, ca_key), ca=False), key)
    return d


def web_config(pki: Path, body: str) -> Path:
    path = pki / f"web-{abs(hash(body))}.yml"
    path.write_text(body)
    return path


HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
FULL = f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_ca_file: ca.crt
  client_auth_type: VerifyClientCertIfGiven
  min_version: TLS12
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: {HASH}
"""


@pytest.fixture
def secured(pki: Path) -> Iterator[str]:
    security = webconfig.load(web_config(pki, FULL))
    httpd, _ = server.serve(server.App(CollectorRegistry(), [], security), "127.0.0.1", 0)
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(
    url: str, pki: Path, auth: str | None = None, client_cert: bool = False
) -> tuple[int, dict[str, str]]:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(pki / "client.crt", pki / "client.key")
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), context=ctx, timeout=5
        ) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def test_promtool_accepts_the_web_config(pki):
    proc = subprocess.run(
        [promtool(), "check", "web-config", str(web_config(pki, FULL))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tls_with_basic_auth(secured, pki):
    status, headers = fetch(secured + "/metrics", pki)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert fetch(secured + "/metrics", pki, "prometheus:wrong")[0] == 401
    assert fetch(secured + "/metrics", pki, "nobody:" + PASSWORD)[0] == 401
    status, headers = fetch(secured + "/metrics", pki, "prometheus:" + PASSWORD)
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(secured + "/", pki, "prometheus:" + PASSWORD, client_cert=True)[0] == 200
    # Plain HTTP to the TLS port gets nothing useful, and the server keeps serving.
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(secured.replace("https", "http") + "/metrics", timeout=5)
    assert fetch(secured + "/-/healthy", pki, "prometheus:" + PASSWORD)[0] == 200


def test_client_certificates_can_be_required(pki):
    body = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n"
    security = webconfig.load(web_config(pki, body))
    httpd, _ = server.serve(server.App(CollectorRegistry(), [], security), "127.0.0.1", 0)
    url = f"https://127.0.0.1:{httpd.server_address[1]}/-/healthy"
    try:
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            fetch(url, pki)
        assert fetch(url, pki, client_cert=True)[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "basic_auth_users:\n  admin: hunter2\n",
            "basic_auth_users: Value error, user 'admin': expected a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "tls_server_config: cannot load cert_file/key_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS99\n",
            "tls_server_config.min_version",
        ),
        ("tls_config:\n  cert_file: server.crt\n", "tls_config: unknown key"),
    ],
)
def test_mistakes_name_their_key(pki, body, expected):
    with pytest.raises(config.ConfigError) as info:
        webconfig.load(web_config(pki, body))
    assert expected.replace("Value error, ", "") in str(info.value)


def test_exporter_process_serves_tls_and_auth_from_the_flag(pki):
    port = free_port()
    path = web_config(pki, FULL)
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
        env=dict(os.environ),
    )
    try:
        status = 0
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                status, _ = fetch(
                    f"https://127.0.0.1:{port}/metrics", pki, "prometheus:" + PASSWORD
                )
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200
        assert fetch(f"https://127.0.0.1:{port}/metrics", pki)[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert PASSWORD.encode() not in out
