"""Test certificates made with cryptography: a CA, server and client certificates, as files."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str,
    key: Any,
    issuer: tuple[x509.Name, Any] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0] if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _keypem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_server_cert(d: Path, ca: x509.Certificate, ca_key: Any, name: str = "server") -> None:
    # RSA, as the toolkit's: its cipher cases name ECDHE_RSA suites.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    (d / f"{name}.crt").write_bytes(pem(issue(name, key, (ca.subject, ca_key), sans=sans)))
    (d / f"{name}.key").write_bytes(_keypem(key))


def make_pki(d: Path) -> Path:
    """ca.crt signs server.crt and client.crt (SAN DNS test3); other-ca.crt signs
    stranger.crt; rotated.crt is a second server certificate for the reload case."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("test-ca", ca_key, None, ca=True)
    (d / "ca.crt").write_bytes(pem(ca))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = issue("other-ca", other_key, None, ca=True)
    (d / "other-ca.crt").write_bytes(pem(other))
    make_server_cert(d, ca, ca_key)
    make_server_cert(d, ca, ca_key, "rotated")
    for name, issuer in (
        ("client", (ca.subject, ca_key)),
        ("stranger", (other.subject, other_key)),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName("test3"), x509.RFC822Name("client@example.com")]
        (d / f"{name}.crt").write_bytes(pem(issue(name, key, issuer, sans=sans)))
        (d / f"{name}.key").write_bytes(_keypem(key))
    (d / "empty.pem").write_text("")

    return d


def https_opener(
    d: Path, client_cert: bool = False, user: tuple[str, str] | None = None
) -> urllib.request.OpenerDirector:
    """An opener that trusts d/ca.crt, presents d/client.crt if asked, and sends basic auth."""
    context = ssl.create_default_context(cafile=str(d / "ca.crt"))
    if client_cert:
        context.load_cert_chain(d / "client.crt", d / "client.key")
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        opener.addheaders = [("Authorization", f"Basic {token}")]
    return opener
