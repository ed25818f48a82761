"""TLS, basic auth, headers and a rate limit for the HTTP server, from an exporter-toolkit file.

Operators already keep these files for node_exporter and friends (`--web.config.file`), so the
file means here what it means there (exporter-toolkit's docs/web-configuration.md), key by key:
the same keys and defaults, the same refusals with the same reasons (`missing one of cert or
cert_file`, `HTTP header "X" can not be configured`, ...), and the same re-reading: users and
headers for each request, TLS settings and certificates for each new connection, so rotated
certificates take effect without a restart. A file that turns invalid keeps the last good
settings and logs why.

Python's `ssl` cannot do two things Go does, and those are refused with a reason rather than
approximated: asking for a client certificate without verifying it (`RequestClientCert`,
`RequireAnyClientCert`), and restricting key exchange to several of the listed curves at once (one
curve is applied; a list keeps OpenSSL's defaults, with a warning).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bcrypt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from exporter.settings import strict_yaml
from exporter.settings.config import ConfigError
from exporter.settings.durations import parse_duration

log = logging.getLogger(__name__)

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names for the suites it lets a config choose (tls.CipherSuites()), and
# OpenSSL's names for them. The TLS 1.3 suites are not configurable in Go either.
CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}
# What Go's HTTP/2 server requires among configured suites when http2 is on.
_HTTP2_CIPHERS = {
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The headers exporter-toolkit lets a config add, and the values it allows where it restricts
# them (its extraHTTPHeaders): one set for the whole Prometheus ecosystem.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # Go keeps this old name of RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_BCRYPT = re.compile(rb"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_AUTH_CACHE_SIZE = 100  # as the toolkit's
_CHANGED = "a file changed"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text(value: Any) -> Any:
    """A YAML scalar where Go reads a string: `X-XSS-Protection: 1` is the text "1"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class TLSServerConfig(_Model):
    cert: str = ""
    key: str = Field(default="", repr=False)
    client_ca: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: str = ""
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: list[str] = []
    curve_preferences: list[str] = []
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: list[str] | None = None

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in _TLS_VERSIONS:
            raise ValueError(f"unknown TLS version: {value}")
        return value

    @field_validator("cipher_suites", "curve_preferences")
    @classmethod
    def _known_names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known, what = (
            (CIPHERS, "cipher") if info.field_name == "cipher_suites" else (CURVES, "curve")
        )
        for name in value:
            if name not in known:
                raise ValueError(f"unknown {what}: {name}")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any TLS key is set: the toolkit serves plain HTTP otherwise."""
        return any(
            (
                self.cert,
                self.key,
                self.client_ca,
                self.cert_file,
                self.key_file,
                self.client_ca_file,
                self.client_auth_type,
            )
        )


class HTTPServerConfig(_Model):
    http2: bool = True
    headers: dict[str, str] = {}

    @field_validator("headers", mode="before")
    @classmethod
    def _scalars(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _text(v) for k, v in value.items()}
        return value

    @field_validator("headers")
    @classmethod
    def _allowed(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            allowed = HEADERS.get(name)
            if allowed is None:
                raise ValueError(f'HTTP header "{name}" can not be configured')
            if allowed and value not in allowed:
                raise ValueError(
                    f"invalid value for {name}. Expected one of: {list(allowed)}, but got: {value!r}"
                )
            if _CONTROL.search(value):
                raise ValueError(f"invalid value for {name}: control characters (CR, LF, ...)")
        return headers


class RateLimit(_Model):
    burst: int = Field(default=0, ge=0)
    interval: float = 0.0

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return 0.0 if value in (None, "", 0) else parse_duration(value)


class WebConfig(_Model):
    tls_server_config: TLSServerConfig = TLSServerConfig()
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    rate_limit: RateLimit = RateLimit()
    basic_auth_users: dict[str, str] = {}

    @field_validator("tls_server_config", "http_server_config", "rate_limit", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `key:` alone is an empty section, as in Go

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {_text(k): _text(v) for k, v in value.items()}
        return value

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not _BCRYPT.match(hashed.encode()):
                raise ValueError(
                    f"user {user!r}: hashedSecret too short to be a bcrypted password "
                    "(expected a bcrypt hash such as $2y$10$..., not a password)"
                )
        return users


@dataclass(frozen=True)
class Settings:
    """One reading of the file: what each connection and request is checked against."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    users: dict[str, bytes]
    dummy_hash: bytes  # checked for unknown users, at the configured cost
    files: tuple[Path, ...]  # the file and the files it names, watched for changes

    @property
    def headers(self) -> dict[str, str]:
        return self.config.http_server_config.headers

    @property
    def allowed_sans(self) -> list[str] | None:
        return self.config.tls_server_config.client_allowed_sans


class RateLimiter:
    """A token bucket as Go's `rate.NewLimiter(rate.Every(interval), burst)`: full at start."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) / self.interval)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class Security:
    """The web config in force: re-read when the file or a file it names changes (checked at
    each new connection, and on SIGHUP), keeping the last good settings if it turns invalid."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self._settings = settings
        self._signature = _signature(settings.files)
        self._failed_signature: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()  # one bcrypt at a time: wrong passwords must not starve
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self.limiter = _limiter(settings.config.rate_limit)

    @property
    def tls(self) -> bool:
        return self._settings.ssl_context is not None

    @property
    def config(self) -> WebConfig:
        return self._settings.config

    def current(self) -> Settings:
        """The settings for a new connection or request, re-read first if a file changed."""
        signature = _signature(self._settings.files)
        if signature != self._signature and signature != self._failed_signature:
            self.reload(_CHANGED)
        return self._settings

    def reload(self, reason: str) -> bool:
        """Read the file again; keep the last good settings if it is invalid now."""
        with self._lock:
            signature = _signature(self._settings.files)
            if reason == _CHANGED and signature == self._signature:
                return True  # another connection's thread reloaded it meanwhile
            try:
                settings = _read(self.path)
                problem = http2_problem(settings.config)
                if problem:
                    raise ConfigError(f"web config invalid: {self.path}", [problem])
                if (settings.ssl_context is None) != (self._settings.ssl_context is None):
                    raise ConfigError(
                        f"web config invalid: {self.path}",
                        ["tls_server_config: turning TLS on or off needs a restart"],
                    )
            except ConfigError as exc:
                self._failed_signature = signature
                log.error(
                    "web config not reloaded; keeping the last good one",
                    extra={"path": str(self.path), "reason": reason, "error": str(exc)},
                )
                return False
            self._settings = settings
            self._signature = _signature(settings.files)
            self._failed_signature = None
            self._cache.clear()
            limit = settings.config.rate_limit
            if self.limiter is None or (limit.interval, limit.burst) != (
                self.limiter.interval,
                self.limiter.burst,
            ):
                self.limiter = _limiter(limit)
        log.info("web config reloaded", extra={"path": str(self.path), "reason": reason})
        _warn_ignored(settings.config, self.path)
        return True

    def allowed_by_rate(self) -> bool:
        limiter = self.limiter
        return limiter is None or limiter.allow()

    def authorized(self, header: str | None) -> bool:
        """Check an Authorization header against the users, as the toolkit does: the scheme in
        any case, an unknown user checked against a dummy hash of the same cost (its answer
        takes as long as a wrong password's), bcrypt one at a time, and the last answers
        cached, so that scrapes with the right password never wait behind wrong ones."""
        settings = self.current()
        if not settings.users:
            return True
        credentials = _basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = settings.users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else settings.dummy_hash
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached and known
        with self._bcrypt:
            try:
                ok = bcrypt.checkpw(password, hashed)
            except ValueError:  # over 72 bytes, which bcrypt refuses to check: not this password
                ok = False
        with self._lock:
            self._cache[key] = ok
            while len(self._cache) > _AUTH_CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok and known

    def client_allowed(self, peer: Mapping[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of `client_allowed_sans`."""
        allowed = self._settings.allowed_sans
        if allowed is None:
            return True
        if not peer:
            return False
        values = [str(value) for _kind, value in peer.get("subjectAltName", ())]
        return any(value in allowed for value in values)


def _basic(header: str | None) -> tuple[str, bytes] | None:
    """User and password of a Basic Authorization header (the scheme is case-insensitive)."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def _limiter(limit: RateLimit) -> RateLimiter | None:
    return RateLimiter(limit.interval, limit.burst) if limit.interval else None


def _signature(files: tuple[Path, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for path in files:
        try:
            st = path.stat()
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _read(path: Path) -> Settings:
    """Read, validate and build the settings of a web config file, or raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read web config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"web config invalid: {path} is not UTF-8 text") from None
    try:
        raw = strict_yaml.load(text) or {}
    except strict_yaml.YAMLProblem as exc:
        raise ConfigError(f"web config invalid: {exc.describe(path)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"web config invalid: {path}", ["(top level): expected a mapping"])
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as exc:
        details = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            + (
                "unknown key (field not found in type web.Config)"
                if err["type"] == "extra_forbidden"
                else str(err["msg"]).removeprefix("Value error, ")
            )
            for err in exc.errors()
        ]
        raise ConfigError(f"web config invalid: {path}", details) from None
    tls = config.tls_server_config
    files = [path]
    ctx = None
    if tls.enabled:
        try:
            ctx = _context(tls, path.parent)
        except ValueError as exc:
            raise ConfigError(
                f"web config invalid: {path}", [f"tls_server_config: {exc}"]
            ) from None
        files += [
            path.parent / name for name in (tls.cert_file, tls.key_file, tls.client_ca_file) if name
        ]
    users = {user: hashed.encode() for user, hashed in config.basic_auth_users.items()}
    return Settings(config, ctx, users, _dummy(users), tuple(files))


_DUMMIES: dict[bytes, bytes] = {}


def _dummy(users: dict[str, bytes]) -> bytes:
    """A hash of a random password at the users' (highest) cost, made once per cost."""
    costs = [m.group(1) for h in users.values() if (m := _BCRYPT.match(h))]
    cost = max(costs, default=b"10")
    if cost not in _DUMMIES:
        _DUMMIES[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(int(cost)))
    return _DUMMIES[cost]


def http2_problem(config: WebConfig) -> str | None:
    """Why Go's HTTP/2 server would refuse to start with this file, if it would. Like Go, this
    is found when serving, not by `check` (promtool check web-config passes such a file)."""
    tls, http = config.tls_server_config, config.http_server_config
    wanted = tls.enabled and tls.cipher_suites and http.http2
    if wanted and not _HTTP2_CIPHERS.intersection(tls.cipher_suites):
        return (
            "http2 is on, and TLSConfig.CipherSuites is missing an HTTP/2-required "
            "AES_128_GCM_SHA256 cipher (add one, or set http_server_config.http2: false)"
        )
    return None


def _context(tls: TLSServerConfig, base: Path) -> ssl.SSLContext:
    """An SSLContext for a TLS config, refused for the reasons and in the order Go refuses it."""
    if not tls.cert_file and not tls.cert:
        raise ValueError("missing one of cert or cert_file")
    if not tls.key_file and not tls.key:
        raise ValueError("missing one of key or key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum, maximum = _TLS_VERSIONS[tls.min_version], _TLS_VERSIONS[tls.max_version]
    if minimum > maximum:
        raise ValueError(
            f"min_version {tls.min_version} is above max_version {tls.max_version}: "
            "no supported versions satisfy MinVersion and MaxVersion"
        )
    ctx.minimum_version, ctx.maximum_version = minimum, maximum
    _load_pair(ctx, tls, base)
    auth = tls.client_auth_type or "NoClientCert"
    if auth in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
        raise ValueError(
            f"client_auth_type {auth} is not supported here: Python's TLS library cannot ask for "
            "a client certificate without verifying it; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert"
        )
    if auth not in ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        raise ValueError(f"invalid ClientAuth: {auth}")
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    if has_ca and auth == "NoClientCert":
        raise ValueError("client CA's have been configured without a Client Auth Policy")
    if tls.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        raise ValueError(
            "client_allowed_sans requires client_auth_type RequireAndVerifyClientCert "
            "(or RequireAnyClientCert, which Python's TLS library cannot do)"
        )
    if auth != "NoClientCert":
        try:
            if tls.client_ca_file:
                ctx.load_verify_locations(base / tls.client_ca_file)
            elif tls.client_ca:
                ctx.load_verify_locations(cadata=tls.client_ca)
            else:
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go: the system's roots
        except FileNotFoundError as exc:
            raise ValueError(f"open {exc.filename}: no such file or directory") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the client CA: {exc}") from None
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if auth == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
        )
    suites = [CIPHERS[name] for name in tls.cipher_suites if CIPHERS[name]]
    if suites:
        ctx.set_ciphers(":".join(suites))
    if len(tls.curve_preferences) == 1:
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:  # Python sets it on server contexts by default
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def _load_pair(ctx: ssl.SSLContext, tls: TLSServerConfig, base: Path) -> None:
    """Load the certificate and key, from files or inline PEM (written to a private temporary
    directory for the call, as `ssl` reads only files)."""
    with tempfile.TemporaryDirectory(prefix="wolkvox-tls-") as scratch:
        cert = base / tls.cert_file if tls.cert_file else Path(scratch) / "cert.pem"
        key = base / tls.key_file if tls.key_file else Path(scratch) / "key.pem"
        for path, text in ((cert, tls.cert), (key, tls.key)):
            if text and not (tls.cert_file if path is cert else tls.key_file):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
        try:
            ctx.load_cert_chain(cert, key)
        except FileNotFoundError as exc:
            which = "cert_file" if Path(str(exc.filename)) == cert else "key_file"
            raise ValueError(
                f"failed to read {which} ({exc.filename}): open {exc.filename}: "
                "no such file or directory"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"failed to load X509KeyPair: {exc}") from None


def _warn_ignored(config: WebConfig, path: Path) -> None:
    """Say which keys do not act here as in Go, by name, through the logger."""
    tls = config.tls_server_config
    notes = []
    if len(tls.curve_preferences) > 1:
        notes.append("tls_server_config.curve_preferences (only a single curve can be enforced)")
    if "http2" in config.http_server_config.model_fields_set and config.http_server_config.http2:
        notes.append("http_server_config.http2 (this server speaks HTTP/1.1 only)")
    if notes:
        log.warning(
            "web config keys without effect here",
            extra={"path": str(path), "keys": "; ".join(notes)},
        )


def load(path: str | Path, serving: bool = True) -> Security:
    """Read a web config file; raise ConfigError naming the key of every problem. With
    `serving`, also what would stop Go's server from starting with it (see `http2_problem`)."""
    path = Path(path)
    settings = _read(path)
    problem = http2_problem(settings.config)
    if serving and problem:
        raise ConfigError(f"web config invalid: {path}", [f"tls_server_config: {problem}"])
    _warn_ignored(settings.config, path)
    return Security(path, settings)
