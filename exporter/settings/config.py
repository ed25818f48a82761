"""Configuration: YAML in, a validated and frozen `Config` out, or one `ConfigError` naming every mistake.

Everything that can be wrong with a config file is found here, before any thread or socket starts, so
an operator gets the full list of problems in one run of `wolkvox-exporter check`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
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
from exporter.settings.durations import parse_bytes, parse_duration

DEFAULT_LISTEN_ADDRESS = ":9856"

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A config that cannot be used; `details` holds one `location: problem` line per mistake."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {d}" for d in self.details)])


Duration = Annotated[float, BeforeValidator(parse_duration)]


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
FALLBACK = "fallback"
QUESTION = "question"
FALLBACK_MATCH = (
    r"(?i)\bno (te |le |lo )?(he )?(entend[ií]|comprend[ií]|entiendo|comprendo)"
    r"|\bn[aã]o (te )?(entendi|compreendi|entendo)"
    r"|\b(did ?n[o']?t|do ?n[o']?t|could ?n[o']?t|can ?n?[o']?t) (understand|get that|catch that)"
    r"|\bnot sure (what|i) (you|understand)"
)
QUESTION_MATCH = r"\?[\s\W]*$|(^|\s)1\s*[.)-]\s*\S.*\s2\s*[.)-]\s*\S"

DEFAULT_OUTCOMES = (
    # transfer_skill, and any answer that names a skill ("skill: ventas", "Transfer to skill 12").
    OutcomeRule(outcome=TRANSFERRED, match=r"(?i)skill"),
    # Wolkvox masks what the customer typed into a protected input as "MaskedText: ...".
    OutcomeRule(outcome="masked_input", match=r"(?i)^\s*maskedtext\s*:"),
    OutcomeRule(outcome="none", match=r"^\s*$"),
    # The bot did not understand: the usual replies in Spanish, Portuguese and English.
    OutcomeRule(outcome=FALLBACK, match=FALLBACK_MATCH),
    # The bot asks the customer something: a question mark at the end, or numbered options.
    OutcomeRule(outcome=QUESTION, match=QUESTION_MATCH),
)


class Kpis(_Model):
    """How routing answers map to outcomes, and how sessions are told apart and remembered.

    A session counts as transferred once any of its records has the outcome `transferred`, so
    keep that name on the rule that matches hand-offs to agents.
    """

    outcomes: tuple[OutcomeRule, ...] = Field(default=DEFAULT_OUTCOMES, max_length=20)
    default_outcome: OutcomeName = "bot_answer"
    session_horizon: Duration = 86400.0
    # A session ends this long after its last row (Wolkvox times routing points out at 60m).
    session_timeout: Duration = 3600.0
    # A session is a re-contact if its customer's previous session ended this long before.
    recontact_window: Duration = 86400.0
    # The outcomes that leave the customer waiting: a session whose last row has one of them,
    # and no transfer, was abandoned.
    awaiting_outcomes: tuple[OutcomeName, ...] = (QUESTION, FALLBACK)

    @field_validator("session_horizon")
    @classmethod
    def _long_enough(cls, value: float) -> float:
        if value < 3600:
            raise ValueError("must be at least 1h: sessions last longer than a few polls")
        return value

    @field_validator("session_timeout", "recontact_window")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Kpis:
        if self.session_timeout >= self.session_horizon:
            raise ValueError(
                "kpis.session_timeout must be shorter than kpis.session_horizon: a session "
                "is remembered longer than it may stay quiet"
            )
        if "awaiting_outcomes" in self.model_fields_set:
            known = {self.default_outcome, *(r.outcome for r in self.outcomes)}
            unknown = [n for n in self.awaiting_outcomes if n not in known]
            if unknown:
                raise ValueError(
                    f"kpis.awaiting_outcomes names {', '.join(map(repr, unknown))}, which no "
                    "rule of kpis.outcomes (nor default_outcome) gives"
                )
        return self


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

    def per_operation(self) -> list[OperationSettings]:
        """Each operation with the settings its poller, tally and client read."""
        return [
            OperationSettings(op, self.polling, self.labels, self.kpis) for op in self.operations
        ]


@dataclass(frozen=True)
class OperationSettings:
    """What one operation's poller, tally and client read, built once from the config.

    The poller, the tally and the client each take this one object, so a setting added to the
    config reaches all three (and backfill, the tests and the benchmarks, which build it the same
    way) without another argument threaded through every constructor.
    """

    operation: Operation
    polling: Polling = field(default_factory=Polling)
    labels: Labels = field(default_factory=Labels)
    kpis: Kpis = field(default_factory=Kpis)

    @property
    def name(self) -> str:
        return self.operation.name

    @property
    def zone(self) -> ZoneInfo:
        return self.operation.zone

    @property
    def interval(self) -> int:
        return int(self.polling.interval)

    @property
    def lookback(self) -> int:
        return int(self.polling.lookback)


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
