"""The web config file behaves as exporter-toolkit's does, case by case.

`TABLE` has one row per configuration of the toolkit's own tests (web/testdata and the
expectations in web/tls_config_test.go), written here in our own words with certificates made
by the test: the file either is refused for the reason Go gives, or starts, and then each
request (plain or TLS client, TLS version, cipher, curve, client certificate, basic auth) is
accepted or refused as in Go. Rows where Python's ssl cannot do what Go does are marked
`DIFFERS` and listed in docs/web-config.md.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from exporter.exposition import server, webconfig
from exporter.settings import config

PASSWORD = "dave123"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


# -- certificates ---------------------------------------------------------------------------


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One request: over TLS or not, with what the client offers and presents."""

    tls: bool = True
    cert: str | None = None  # client.crt or stranger.crt
    max_version: ssl.TLSVersion | None = None
    ciphers: str | None = None  # OpenSSL names, for TLS 1.2
    curve: str | None = None
    user: str | None = None
    password: str = PASSWORD
    path: str = "/-/healthy"


def request(port: int, pki: Path, c: Client) -> tuple[str | int, dict[str, str]]:
    """200, 401, 429...: the status; "tls" when the handshake fails; "http" when a plain
    request cannot be answered (a TLS server)."""
    headers = {}
    if c.user is not None:
        token = base64.b64encode(f"{c.user}:{c.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    ctx: ssl.SSLContext | None = None
    if c.tls:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if c.cert:
            ctx.load_cert_chain(pki / f"{c.cert}.crt", pki / f"{c.cert}.key")
        if c.max_version:
            ctx.minimum_version = min(ctx.minimum_version, c.max_version)
            ctx.maximum_version = c.max_version
        if c.ciphers:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(c.ciphers)
        if c.curve:
            ctx.set_ecdh_curve(c.curve)
    url = f"{'https' if c.tls else 'http'}://127.0.0.1:{port}{c.path}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), context=ctx, timeout=5
        ) as r:
            cipher = ""
            sock = getattr(getattr(r.fp, "raw", None), "_sock", None)
            if isinstance(sock, ssl.SSLSocket):
                cipher = (sock.cipher() or ("",))[0]
            return r.status, {**dict(r.headers), "cipher": cipher}
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        # With TLS 1.3 a refused client certificate shows after the handshake, as a closed
        # connection; either way the request got no answer.
        return ("tls" if c.tls else "http"), {}


@dataclass
class Starts:
    """The file is accepted; each (client, expected) pair is then tried in turn."""

    checks: list[tuple[Client, str | int]] = field(default_factory=list)


@dataclass
class Refused:
    reason: str  # a regular expression over the error text


@dataclass
class Case:
    name: str
    toolkit: str  # the toolkit's testdata file this row stands for
    body: str
    outcome: Starts | Refused
    differs: str = ""  # why this row does not match Go, if it does not


SERVER = 'tls_server_config:\n  cert_file: "server.crt"\n  key_file: "server.key"\n'
TLS_OK: list[tuple[Client, str | int]] = [(Client(), 200), (Client(tls=False), "http")]
PLAIN_OK: list[tuple[Client, str | int]] = [(Client(tls=False), 200), (Client(), "tls")]

TABLE = [
    Case("empty file", "web_config_empty.yml", "", Starts(PLAIN_OK)),
    Case("junk", "web_config_junk.yml", "Hello world\n", Refused("expected a mapping")),
    Case(
        "unknown key",
        "web_config_junk_key.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  foo: bar\n",
        Refused("foo: unknown key"),
    ),
    Case(
        "cert path empty",
        "web_config_noAuth_certPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: ""\n  key_file: "server.key"\n',
        Refused("missing one of cert or cert_file"),
    ),
    Case(
        "cert empty",
        "web_config_noAuth_cert_empty.bad.yml",
        'tls_server_config:\n  cert: ""\n  key_file: "server.key"\n',
        Refused("missing one of cert or cert_file"),
    ),
    Case(
        "key path empty",
        "web_config_noAuth_keyPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key_file: ""\n',
        Refused("missing one of key or key_file"),
    ),
    Case(
        "key empty",
        "web_config_noAuth_key_empty.bad.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key: ""\n',
        Refused("missing one of key or key_file"),
    ),
    Case(
        "cert and key paths empty",
        "web_config_noAuth_certPath_keyPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: ""\n  key_file: ""\n  client_auth_type: "x"\n',
        Refused("missing one of cert or cert_file"),
    ),
    Case(
        "cert path invalid",
        "web_config_noAuth_certPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "nope.crt"\n  key_file: "server.key"\n',
        Refused("no such file"),
    ),
    Case(
        "key path invalid",
        "web_config_noAuth_keyPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key_file: "nope.key"\n',
        Refused("no such file"),
    ),
    Case(
        "cert and key paths invalid",
        "web_config_noAuth_certPath_keyPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "nope.crt"\n  key_file: "nope.key"\n',
        Refused("no such file"),
    ),
    Case(
        "client CA without a client auth policy",
        "web_config_noAuth.bad.yml",
        SERVER + '  client_ca_file: "ca.crt"\n',
        Refused("client CA's have been configured without a Client Auth Policy"),
    ),
    Case(
        "client CA file missing",
        "web_config_auth_clientCAs_invalid.bad.yml",
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: "nope.pem"\n',
        Refused("no such file"),
    ),
    Case(
        "client CA file without certificates",
        "web_config_auth_clientCAs_nocerts.bad.yml",
        SERVER
        + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: "empty.pem"\n',
        Refused("client CA"),
        differs="promtool 2.42's toolkit accepts it; newer toolkits refuse it, as we do",
    ),
    Case(
        "invalid client auth type",
        "tls_config_test.go: invalid ClientAuth",
        SERVER + '  client_auth_type: "Sometimes"\n',
        Refused("invalid ClientAuth: Sometimes"),
    ),
    Case(
        "a password instead of a hash",
        "web_config_auth_user_list_invalid.bad.yml",
        "basic_auth_users:\n  john: doe\n",
        Refused("hashedSecret too short to be a bcrypted password"),
    ),
    Case(
        "invented cipher",
        "web_config_noAuth_inventedCiphers.bad.yml",
        SERVER + "  cipher_suites:\n    - TLS_FAKE_CIPHER\n",
        Refused("unknown cipher: TLS_FAKE_CIPHER"),
    ),
    Case(
        "invented curve",
        "web_config_noAuth_inventedCurves.bad.yml",
        SERVER + "  curve_preferences:\n    - CurveP7\n",
        Refused("unknown curve: CurveP7"),
    ),
    Case(
        "wrong TLS version",
        "web_config_noAuth_wrongTLSVersion.bad.yml",
        SERVER + "  min_version: TLS111\n",
        Refused("unknown TLS version: TLS111"),
    ),
    Case(
        "min_version above max_version",
        "(Go fails every handshake instead)",
        SERVER + "  min_version: TLS13\n  max_version: TLS12\n",
        Refused("min_version TLS13 is above max_version TLS12"),
        differs="refused at start rather than failing every handshake",
    ),
    Case(
        "TLS, no client certificate asked",
        "web_config_noAuth.good.yml",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n',
        Starts(
            [
                *TLS_OK,
                (Client(max_version=ssl.TLSVersion.TLSv1_1), "tls"),  # below min_version
            ]
        ),
    ),
    Case(
        "certificate and key inline",
        "web_config_noAuth_tlsInline.good.yml",
        "inline",  # filled in by the test from server.crt and server.key
        Starts(TLS_OK),
    ),
    Case(
        "all ciphers",
        "web_config_noAuth_allCiphers.good.yml",
        SERVER
        + "  cipher_suites:\n"
        + "".join(f"    - {name}\n" for name in webconfig.CIPHERS)
        + "  min_version: TLS12\n",
        Starts(TLS_OK),
    ),
    Case(
        "some ciphers",
        "web_config_noAuth_someCiphers.good.yml",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n'
        "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        "    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n",
        Starts(
            [
                (Client(ciphers="ECDHE-RSA-AES128-GCM-SHA256"), 200),
                (Client(ciphers="ECDHE-RSA-AES256-SHA"), "tls"),  # no common cipher
                # Several offered: the server's order decides.
                (
                    Client(ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"),
                    "cipher ECDHE-RSA-AES128-GCM-SHA256",
                ),
            ]
        ),
    ),
    Case(
        "some ciphers, the client's order",
        "web_config_noAuth_someCiphers_noOrder.good.yml",
        'tls_server_config :\n  cert_file : "server.crt"\n  key_file : "server.key"\n'
        "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        "    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  prefer_server_cipher_suites: false\n"
        "  min_version: TLS12\n  max_version: TLS12\n",
        Starts(
            [
                (
                    Client(ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"),
                    "cipher ECDHE-RSA-AES128-GCM-SHA256",
                )
            ]
        ),
    ),
    Case(
        "a cipher list without HTTP/2's, http2 on",
        "web_config_noAuth_noHTTP2Cipher.bad.yml",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n'
        "  cipher_suites:\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n  max_version: TLS12\n",
        Refused("missing an HTTP/2-required AES_128_GCM_SHA256 cipher"),  # when serving
    ),
    Case(
        "a cipher list without HTTP/2's, http2 off",
        "web_config_noAuth_noHTTP2.good.yml",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n'
        "  cipher_suites:\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n  max_version: TLS12\n"
        "http_server_config:\n  http2: false\n",
        Starts([(Client(ciphers="AES128-SHA"), 200)]),
    ),
    Case(
        "all curves",
        "web_config_noAuth_allCurves.good.yml",
        SERVER + "  curve_preferences:\n    - CurveP256\n    - CurveP384\n    - CurveP521\n"
        "    - X25519\n",
        Starts(TLS_OK),
    ),
    Case(
        "some curves",
        "web_config_noAuth_someCurves.good.yml",
        SERVER + "  curve_preferences:\n    - CurveP521\n",
        Starts([(Client(curve="secp521r1"), 200), (Client(curve="secp384r1"), "tls")]),
    ),
    Case(
        "headers",
        "web_config_headers.good.yml",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n",
        Starts(
            [
                (Client(tls=False), "header X-XSS-Protection: 1"),
                (Client(tls=False, path="/nope"), "header X-Frame-Options: deny"),
            ]
        ),
    ),
    Case(
        "X-Content-Type-Options other than nosniff",
        "web_config_headers_content_type_options.bad.yml",
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        Refused("invalid value for X-Content-Type-Options"),
    ),
    Case(
        "X-Frame-Options other than deny or sameorigin",
        "web_config_headers_frame_options.bad.yml",
        "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
        Refused("invalid value for X-Frame-Options"),
    ),
    Case(
        "a header that cannot be set",
        "web_config_headers_extra_header.bad.yml",
        "http_server_config:\n  headers:\n    Content-Type: text/html\n",
        Refused('HTTP header "Content-Type" can not be configured'),
    ),
    Case(
        "WWW-Authenticate cannot be set either",
        "headers_test.go",
        "http_server_config:\n  headers:\n    WWW-Authenticate: Basic\n",
        Refused('HTTP header "WWW-Authenticate" can not be configured'),
    ),
    Case(
        "a header value with CR/LF",
        "(Go's server strips them)",
        'http_server_config:\n  headers:\n    Content-Security-Policy: "a\\r\\nSet-Cookie: x=1"\n',
        Refused("control characters"),
        differs="refused at start; Go replaces CR/LF by spaces when it writes the header",
    ),
    Case(
        "client certificate required, any",
        "tls_config_noAuth.requireanyclientcert.good.yml",
        SERVER + '  client_auth_type: "RequireAnyClientCert"\n',
        Refused("cannot ask for a client certificate without verifying it"),
        differs="Python's ssl cannot request a certificate without verifying it",
    ),
    Case(
        "client certificate requested",
        "tls_config_test.go: RequestClientCert",
        SERVER + '  client_auth_type: "RequestClientCert"\n',
        Refused("cannot ask for a client certificate without verifying it"),
        differs="Python's ssl cannot request a certificate without verifying it",
    ),
    Case(
        "client certificate required and verified",
        "tls_config_noAuth.requireandverifyclientcert.good.yml",
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: "ca.crt"\n',
        Starts(
            [
                (Client(cert="client"), 200),
                (Client(), "tls"),  # none presented
                (Client(cert="stranger"), "tls"),  # another CA's
            ]
        ),
    ),
    Case(
        "client certificate verified if given",
        "tls_config_test.go: VerifyClientCertIfGiven with a CA",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n  client_ca_file: "ca.crt"\n',
        Starts([(Client(), 200), (Client(cert="client"), 200), (Client(cert="stranger"), "tls")]),
    ),
    Case(
        "client certificate required, the system's CAs",
        "tls_config_noAuth.requireandverifyclientcert.good.yml (no client_ca_file)",
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n',
        Starts([(Client(), "tls"), (Client(cert="client"), "tls")]),
    ),
    Case(
        "client CA inline",
        "tls_config_noAuth.requireanyclientcertkeyinline.good.yml",
        "inline-ca",  # filled in by the test from ca.crt
        Starts([(Client(cert="client"), 200), (Client(cert="stranger"), "tls")]),
    ),
    Case(
        "client SAN allowed",
        "web_config_auth_client_san.good.yaml",
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: "ca.crt"\n'
        '  client_allowed_sans:\n    - "one"\n    - "test3"\n    - "two"\n',
        Starts([(Client(cert="client"), 200)]),
    ),
    Case(
        "client SAN not allowed",
        "web_config_auth_client_san.bad.yaml",
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: "ca.crt"\n'
        '  client_allowed_sans:\n    - "bad"\n',
        Starts([(Client(cert="client"), "tls")]),
    ),
    Case(
        "client SANs need a required certificate",
        "web_config_auth_client_san_optional_cert.bad.yaml",
        SERVER + '  client_auth_type: "VerifyClientCertIfGiven"\n  client_ca_file: "ca.crt"\n'
        '  client_allowed_sans:\n    - "test3"\n',
        Refused("client_allowed_sans requires client_auth_type"),
    ),
    Case(
        "rate limit off",
        "web_config_rate_limiter_nonblocking.yaml",
        'rate_limit:\n  interval: "0s"\n  burst: 0\n',
        Starts([(Client(tls=False), 200)] * 10),
    ),
    Case(
        "rate limit, burst 0",
        "web_config_rate_limiter_one_second.yaml",
        'rate_limit:\n  interval: "1s"\n  burst: 0\n',
        Starts([(Client(tls=False), 429)]),
    ),
    Case(
        "rate limit, burst 2",
        "web_config_rate_limiter_headers.yaml",
        'rate_limit:\n  interval: "1m"\n  burst: 2\n',
        Starts([(Client(tls=False), 200), (Client(tls=False), 200), (Client(tls=False), 429)]),
    ),
    Case(
        "users without TLS",
        "web_config_users_noTLS.good.yml",
        f"basic_auth_users:\n  alice: {HASH}\n  dave: {HASH}\n",
        Starts(
            [
                (Client(tls=False), 401),
                (Client(tls=False, user="dave"), 200),
                (Client(tls=False, user="dave", password="nope"), 401),
                (Client(tls=False, user="nobody"), 401),
                (Client(tls=False, user="dave", password="x" * 100), 401),  # over bcrypt's 72
            ]
        ),
    ),
    Case(
        "users with TLS",
        "web_config_users.good.yml",
        SERVER + f"basic_auth_users:\n  dave: {HASH}\n",
        Starts([(Client(), 401), (Client(user="dave"), 200), (Client(tls=False), "http")]),
    ),
    Case(
        "an empty user list",
        "(basic_auth_users: with no value)",
        "basic_auth_users:\n",
        Starts(PLAIN_OK),
    ),
    Case(
        "a duplicated key",
        "(go-yaml's UnmarshalStrict refuses it)",
        f"basic_auth_users:\n  dave: {HASH}\nbasic_auth_users: {{}}\n",
        Refused("duplicate key 'basic_auth_users'"),
    ),
]


def write_case(pki: Path, case: Case) -> Path:
    body = case.body
    if body == "inline":
        body = (
            "tls_server_config:\n  cert: |\n"
            + _indent((pki / "server.crt").read_text())
            + "  key: |\n"
            + _indent((pki / "server.key").read_text())
        )
    elif body == "inline-ca":
        body = (
            SERVER
            + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca: |\n'
            + _indent((pki / "ca.crt").read_text())
        )
    path = pki / (re.sub(r"\W+", "_", case.name) + ".yml")
    path.write_text(body)
    return path


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


@pytest.fixture
def serving() -> Iterator[Any]:
    servers: list[server.Server] = []

    def start(security: webconfig.Security) -> int:
        httpd, _ = server.serve(server.App(CollectorRegistry(), [], security), "127.0.0.1", 0)
        servers.append(httpd)
        return int(httpd.server_address[1])

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_the_toolkit_cases_behave_as_in_go(pki, serving, case):
    path = write_case(pki, case)
    if isinstance(case.outcome, Refused):
        with pytest.raises(config.ConfigError) as info:
            webconfig.load(path)
        assert re.search(case.outcome.reason, str(info.value), re.IGNORECASE), str(info.value)
        return
    port = serving(webconfig.load(path))
    for client, expected in case.outcome.checks:
        got, headers = request(port, pki, client)
        if isinstance(expected, str) and expected.startswith("cipher "):
            assert (got, headers.get("cipher")) == (200, expected.split()[1]), client
        elif isinstance(expected, str) and expected.startswith("header "):
            name, value = expected.removeprefix("header ").split(": ", 1)
            assert got in (200, 404) and headers.get(name) == value, (client, headers)
        else:
            assert got == expected, client


# -- behaviour over time ----------------------------------------------------------------------


def _replace(path: Path, text: str) -> None:
    """Write a new version of a file the way a config manager does: a new file renamed over it
    (a new inode, so the change is seen even within the file system's timestamp granularity)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_new_connections_use_the_file_as_it_is_now(pki, serving, caplog):
    """As the toolkit re-reads the file for each connection: a relaxed client policy and a
    rotated certificate take effect without a restart; a broken file keeps the last good one."""
    d = pki / "reload"
    d.mkdir()
    for name in ("server.crt", "server.key", "ca.crt"):
        (d / name).write_bytes((pki / name).read_bytes())
    path = d / "web.yml"
    blocking = (
        SERVER + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca_file: ca.crt\n'
    )
    path.write_text(blocking)
    port = serving(webconfig.load(path))
    assert request(port, d.parent, Client())[0] == "tls"
    _replace(path, SERVER)
    assert request(port, pki, Client())[0] == 200
    # Rotated: the next connection presents the new certificate.
    _replace(d / "server.crt", (pki / "rotated.crt").read_text())
    _replace(d / "server.key", (pki / "rotated.key").read_text())
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    rotated = x509.load_pem_x509_certificate((pki / "rotated.crt").read_bytes())
    assert x509.load_pem_x509_certificate(pem.encode()).serial_number == rotated.serial_number
    # Broken: logged, and the last good settings stay.
    _replace(path, SERVER + "  client_auth_type: Sometimes\n")
    assert request(port, pki, Client())[0] == 200
    assert "web config not reloaded; keeping the last good one" in caplog.text
    assert "invalid ClientAuth" in caplog.text


def test_wrong_passwords_cannot_starve_scrapes_with_the_right_one(pki, serving):
    """bcrypt runs one check at a time and remembers recent answers, as the toolkit does: a
    crowd of wrong passwords waits in line, while the right one, cached, never joins it."""
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(11)).decode()
    path = pki / "costly.yml"
    path.write_text(f"basic_auth_users:\n  dave: {costly}\n")
    security = webconfig.load(path)
    port = serving(security)
    assert request(port, pki, Client(tls=False, user="dave"))[0] == 200  # now cached
    stop = threading.Event()
    wrong = right = 0
    lock = threading.Lock()

    def hammer(n: int) -> None:
        nonlocal wrong
        i = 0
        while not stop.is_set():
            i += 1
            status = request(port, pki, Client(tls=False, user="dave", password=f"bad{n}-{i}"))[0]
            assert status == 401
            with lock:
                wrong += 1

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):
            assert request(port, pki, Client(tls=False, user="dave"))[0] == 200
            right += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    # 40 right answers came back while the six hammering threads got through only a few
    # serialised bcrypt checks: the scrapes did not queue behind them.
    assert right == 40 and wrong < right
    # An unknown user is checked against a hash of the same cost as the real ones.
    assert security.current().dummy_hash[:7] == costly.encode()[:7]


def test_keys_without_effect_are_named_in_the_log(pki, caplog):
    path = pki / "curves.yml"
    path.write_text(
        SERVER + "  curve_preferences: [CurveP256, X25519]\nhttp_server_config:\n  http2: true\n"
    )
    webconfig.load(path)
    assert "web config keys without effect here" in caplog.text
    assert "tls_server_config.curve_preferences" in caplog.text
    assert "http_server_config.http2" in caplog.text
