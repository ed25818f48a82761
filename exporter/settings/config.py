"""Configuration: YAML in, a validated and frozen `Config` out, or one `ConfigError` naming every mistake.

Everything that can be wrong with a config file is found here, before any thread or socket starts, so
an operator gets the full list of problems in one run of `wolkvox-exporter check`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.settings import strict_yaml

DEFAULT_LISTEN_ADDRESS = ":9856"

_DURATION_RE = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A config that cannot be used; `details` holds one `location: problem` line per mistake."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {d}" for d in self.details)])


def parse_duration(value: Any) -> float:
    """Turn a Prometheus-style duration (`90s`, `5m`, `1h30m`) or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 90s, 5m or 1h")
    text = value.strip()
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(
            f"{value!r} is not a duration; use units y w d h m s ms, e.g. 90s, 5m, 1h30m"
        )
    groups = match.groups()[1::2]
    return float(sum(int(g) * unit for g, unit in zip(groups, _DURATION_UNITS, strict=True) if g))


def format_duration(seconds: float) -> str:
    """Render seconds the way the config accepts them, for logs and the landing page."""
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        return f"{int(seconds * 1000)}ms"
    rest = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


Duration = Annotated[float, BeforeValidator(parse_duration)]


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 10**6, "MiB": 1 << 20}
_UNITS |= {"GB": 10**9, "GiB": 1 << 30}


def parse_bytes(value: Any) -> int:
    """A size as a number of bytes or with a unit: `65536`, `64MiB`, `10MB`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"expected a size such as 64MiB or 10MB, not {value!r}")
        size = int(match.group(1)) * _UNITS[match.group(2)]
    if size < 1024:
        raise ValueError("must be at least 1KiB")
    return size


Bytes = Annotated[int, BeforeValidator(parse_bytes)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_WOLKVOX_HOST = re.compile(r"^https?://wv([A-Za-z0-9-]{1,32})\.wolkvox\.com(?::\d+)?(?:/|$)", re.I)


class Operation(_Model):
    """One Wolkvox operation (tenant): where to ask, with which token, in which wall-clock zone."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    server: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,32}$")
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    token: SecretStr | None = None
    token_file: Path | None = None
    timezone: str = "America/Bogota"

    @field_validator("server", mode="before")
    @classmethod
    def _server_is_text(cls, value: Any) -> Any:
        # YAML reads `server: 0032` as the octal number 26; refuse numbers so that never happens quietly.
        if value is not None and not isinstance(value, str):
            raise ValueError(
                'must be a quoted string such as "0032" (YAML reads bare numbers as numbers)'
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}, e.g. America/Bogota") from None
        return value

    @model_validator(mode="after")
    def _where_and_how(self) -> Operation:
        if self.server is None and self.base_url is None:
            raise ValueError("set server (the NNNN of https://wvNNNN.wolkvox.com) or base_url")
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token or token_file")
        return self

    @property
    def url(self) -> str:
        """Endpoint of the reports manager for this operation."""
        base = self.base_url or f"https://wv{self.server}.wolkvox.com"
        return base.rstrip("/") + "/api/v2/reports_manager.php"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def server_number(self) -> str | None:
        """The NNNN of wvNNNN.wolkvox.com, for the `wolkvox_server` header: `server`, else read
        from a `base_url` on Wolkvox's own host name."""
        if self.server is not None:
            return self.server
        match = _WOLKVOX_HOST.match(self.base_url or "")
        return match.group(1) if match else None

    def secret(self) -> str:
        """The token, read from the file if configured that way; never logged."""
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        return self.token_file.read_text(encoding="utf-8").strip()


class Polling(_Model):
    interval: Duration = 300.0
    settle_delay: Duration = 60.0
    lookback: Duration = 300.0
    max_catchup: Duration = 86400.0
    # The longest range one catch-up request may cover (whole intervals, at least one). The
    # poller covers less when the traffic it just read would fill more than half the record cap.
    catchup_span: Duration = 3600.0
    request_spacing: Duration = 1.0
    max_records_per_request: int = Field(default=6000, ge=2)
    # A full diagram_9 answer (6,000 rows of about 350 bytes) is a few MB: 64 MiB leaves room for
    # a larger cap and long free text, and bounds what a broken or hostile answer costs.
    max_response_bytes: Bytes = 64 << 20
    connect_timeout: Duration = 10.0
    timeout: Duration = 60.0
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: Duration = 2.0
    max_backoff: Duration = 1800.0
    # How often to read the token's daily quota (information.php?api=token_info) into
    # wolkvox_token_quota_*; each read costs a call of quota. 0s disables it.
    token_info_interval: Duration = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Polling:
        if self.interval < 1:
            raise ValueError("interval must be at least 1s")
        if self.interval != int(self.interval):
            raise ValueError("interval must be a whole number of seconds")
        if self.timeout <= 0 or self.timeout > 60:
            raise ValueError("timeout must be above 0s and at most 60s, the API's own limit")
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be above 0s")
        if self.max_catchup < self.interval:
            raise ValueError("max_catchup must be at least one interval")
        if 0 < self.token_info_interval < 3600:
            raise ValueError("token_info_interval must be 0s (off) or at least 1h: it costs quota")
        for name in ("settle_delay", "lookback"):
            value = getattr(self, name)
            if value != int(value):
                raise ValueError(f"{name} must be a whole number of seconds")
        return self


class LabelLimit(_Model):
    max_values: int = Field(default=100, ge=1, le=10000)


class RoutingAnswerLimit(_Model):
    max_values: int = Field(default=50, ge=1, le=10000)
    max_length: int = Field(default=64, ge=8, le=512)


class Labels(_Model):
    channel: LabelLimit = LabelLimit(max_values=50)
    rp_id: LabelLimit = LabelLimit(max_values=200)
    routing_answer: RoutingAnswerLimit = RoutingAnswerLimit()
    # The caps above multiply (50 x 200 x 50 label sets); this bounds their product per
    # operation, so a page stays small enough to render within a scrape timeout.
    max_series: int = Field(default=2000, ge=10)
    last_window_retention: Duration = 86400.0


def _outcome_name(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", value):
        raise ValueError(
            f"{value!r} is not an outcome name: lower-case letters, digits and _, "
            "starting with a letter, at most 32 characters"
        )
    return value


OutcomeName = Annotated[str, AfterValidator(_outcome_name)]


class OutcomeRule(_Model):
    """Routing answers that `match` (a Python regex, searched) count under `outcome`."""

    outcome: OutcomeName
    match: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


TRANSFERRED = "transferred"

DEFAULT_OUTCOMES = (
    # transfer_skill, and any answer that names a skill ("skill: ventas", "Transfer to skill 12").
    OutcomeRule(outcome=TRANSFERRED, match=r"(?i)skill"),
    # Wolkvox masks what the customer typed into a protected input as "MaskedText: ...".
    OutcomeRule(outcome="masked_input", match=r"(?i)^\s*maskedtext\s*:"),
    OutcomeRule(outcome="none", match=r"^\s*$"),
)


class Kpis(_Model):
    """How routing answers map to outcomes, and how long a session is remembered.

    A session counts as transferred once any of its records has the outcome `transferred`, so
    keep that name on the rule that matches hand-offs to agents.
    """

    outcomes: tuple[OutcomeRule, ...] = Field(default=DEFAULT_OUTCOMES, max_length=20)
    default_outcome: OutcomeName = "bot_answer"
    session_horizon: Duration = 86400.0

    @field_validator("session_horizon")
    @classmethod
    def _long_enough(cls, value: float) -> float:
        if value < 3600:
            raise ValueError("must be at least 1h: sessions last longer than a few polls")
        return value


class Web(_Model):
    listen_address: str = DEFAULT_LISTEN_ADDRESS

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen_address(value)
        return value


class State(_Model):
    path: Path | None = None


class Config(_Model):
    operations: list[Operation] = Field(min_length=1)
    polling: Polling = Polling()
    labels: Labels = Labels()
    kpis: Kpis = Kpis()
    web: Web = Web()
    state: State = State()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [op.name for op in self.operations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"operation names must be unique; repeated: {', '.join(dupes)}")
        return self


def split_listen_address(value: str) -> tuple[str, int]:
    """Split `host:port`, `:port` or `[v6]:port` the way Prometheus exporters accept it."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. :9856 or 127.0.0.1:9856")
    return host.strip("[]"), int(port)


def _interpolate(node: Any, path: str, errors: list[str]) -> Any:
    """Replace `${VAR}` in every string with the environment's value, noting each missing variable."""
    if isinstance(node, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), errors) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, f"{path}.{i}", errors) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _ENV_RE.sub(sub, node)
    return node


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def from_mapping(raw: Any) -> Config:
    """Validate already-parsed YAML; every mistake becomes one line of the raised ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(
            "config invalid", ["(top level): expected a mapping with an operations key"]
        )
    errors: list[str] = []
    data = _interpolate(raw, "", errors)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _location(err["loc"])
            errors.append(f"{loc}: {_describe(err)}")
        config = None
    if config is not None:
        for i, op in enumerate(config.operations):
            if op.token_file is not None:
                try:
                    if not op.secret():
                        errors.append(f"operations.{i}.token_file: {op.token_file} is empty")
                except OSError as exc:
                    errors.append(
                        f"operations.{i}.token_file: cannot read {op.token_file}: {exc.strerror}"
                    )
            elif not op.secret():
                errors.append(f"operations.{i}.token: is empty")
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ConfigError(f"config invalid: {len(errors)} {noun}", errors)
    assert config is not None
    return config


def load(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = strict_yaml.load(text)
    except strict_yaml.YAMLProblem as exc:
        raise ConfigError(f"config invalid: {exc.describe(path)}") from None
    return from_mapping(raw)
