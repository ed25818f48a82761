"""TLS and basic auth for the HTTP server, from a Prometheus exporter-toolkit web config file.

Operators already keep these files for node_exporter and friends (`--web.config.file`), so the same
keys mean the same here: `tls_server_config` (cert/key files, client CA, client auth type, TLS
versions), `basic_auth_users` (bcrypt hashes) and `http_server_config.headers`. Paths are relative
to the file. Every mistake is reported at start-up, with its key, before the port is opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from exporter.config import ConfigError

log = logging.getLogger(__name__)

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
# A valid bcrypt hash of an unguessable password: checked against unknown user names too, so the
# time an answer takes does not tell which user names exist.
_DUMMY_HASH = b"$2b$10$gN76pBu8lEYnwtxivl3nteW.ycodmyp/6D53uPgO9kM4ugOvWpbRG"  # of a random password nobody kept


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Model):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: ClientAuth | None = None
    min_version: TLSName = "TLS12"
    max_version: TLSName = "TLS13"
    # Accepted so that files written for Go exporters load; Python's TLS picks these itself.
    cipher_suites: list[str] | None = None
    curve_preferences: list[str] | None = None
    prefer_server_cipher_suites: bool | None = None


class HTTPServerConfig(_Model):
    headers: dict[str, str] = {}
    http2: bool | None = None  # accepted for compatibility; this server speaks HTTP/1.1


class WebConfig(_Model):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
                raise ValueError(f"user {user!r}: expected a bcrypt hash ($2b$...), not a password")
        return users


class Security:
    """What the server applies to every connection and request."""

    def __init__(self, config: WebConfig, ssl_context: ssl.SSLContext | None) -> None:
        self.config = config
        self.ssl_context = ssl_context
        self.users = {u: h.encode() for u, h in config.basic_auth_users.items()}
        self.headers = dict(config.http_server_config.headers)
        self._good: set[bytes] = set()  # digests of credentials that passed bcrypt
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        """Check an Authorization header. Successes are cached, as bcrypt costs ~50 ms each."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = (
                base64.b64decode(header[6:], validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            if digest in self._good:
                return True
        hashed = self.users.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        if ok:
            with self._lock:
                if len(self._good) > 1000:
                    self._good.clear()
                self._good.add(digest)
        return ok


def _context(tls: TLSServerConfig, base: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        ctx.load_cert_chain(base / tls.cert_file, base / tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load cert_file/key_file: {exc}") from None
    auth = tls.client_auth_type or (
        "RequireAndVerifyClientCert" if tls.client_ca_file else "NoClientCert"
    )
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise ValueError(
            f"client_auth_type {auth} is not supported (Python's TLS cannot ask for a client "
            "certificate without verifying it); use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if auth == "NoClientCert":
        if tls.client_ca_file:
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert")
        return ctx
    if not tls.client_ca_file:
        raise ValueError(f"client_auth_type {auth} needs client_ca_file")
    try:
        ctx.load_verify_locations(base / tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load client_ca_file: {exc}") from None
    ctx.verify_mode = (
        ssl.CERT_REQUIRED if auth == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
    )
    return ctx


def load(path: str | Path) -> Security:
    """Read a web config file; raise ConfigError naming the key of every problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read web config file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"web config invalid: {path} is not valid YAML") from None
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as exc:
        details = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            + (
                "unknown key"
                if err["type"] == "extra_forbidden"
                else str(err["msg"]).removeprefix("Value error, ")
            )
            for err in exc.errors()
        ]
        raise ConfigError(f"web config invalid: {path}", details) from None
    ctx = None
    if config.tls_server_config is not None:
        try:
            ctx = _context(config.tls_server_config, path.parent)
        except ValueError as exc:
            raise ConfigError(
                f"web config invalid: {path}", [f"tls_server_config: {exc}"]
            ) from None
        ignored = [
            k
            for k in ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
            if getattr(config.tls_server_config, k) is not None
        ]
        if ignored:
            log.warning(
                "web config keys ignored: Python's TLS library chooses these itself",
                extra={"keys": ",".join(ignored)},
            )
    return Security(config, ctx)
