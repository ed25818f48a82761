"""Re-reading the config file and the token files while the exporter runs: SIGHUP and
POST /-/reload, as Prometheus, Alertmanager and blackbox_exporter take them.

A new config runs only once all of it is valid (every problem listed, as `check` lists them)
and nothing in it needs a restart; otherwise the running one is kept and
`wolkvox_exporter_config_last_reload_successful` says so until a good one loads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from exporter.api.client import TokenGate
from exporter.exposition.webconfig import Security
from exporter.logs import RedactingHandler
from exporter.polling.fleet import Change, Fleet
from exporter.settings import config

log = logging.getLogger("exporter")


@dataclass
class ReloadStatus:
    """What /metrics shows of reloads (read by the collector at each scrape)."""

    successful: bool = True
    last_success: float = field(default_factory=time.time)


class Reloader:
    def __init__(
        self,
        path: str | None,
        running: config.Config,
        fleet: Fleet,
        gate: TokenGate,
        security: Security | None,
        redacting: RedactingHandler,
    ) -> None:
        self.path = path  # None with --demo: there is no file to re-read
        self.running = running
        self.fleet = fleet
        self.gate = gate
        self.security = security
        self.redacting = redacting
        self.status = ReloadStatus()
        self._lock = threading.Lock()  # a signal and a POST never reload at once

    @property
    def successful(self) -> bool:
        return self.status.successful

    @property
    def last_success(self) -> float:
        return self.status.last_success

    def reload(self, source: str) -> tuple[bool, str]:
        """Re-read the web config and the config file; return whether the new config runs, and
        a line saying what changed or every reason it was refused."""
        with self._lock:
            if self.security is not None:
                self.security.reload(source)
            if self.path is None:
                return True, "running with --demo: no config file to re-read (web config re-read)"
            try:
                new, tokens = self._read()
            except config.ConfigError as exc:
                return self._refused(source, exc)
            change = self._apply(new, tokens)
            self.status = ReloadStatus(successful=True)
            summary = _summary(change)
            log.info("config reloaded", extra={"source": source, "changes": summary})
            return True, f"config reloaded: {summary}"

    def _read(self) -> tuple[config.Config, dict[str, str]]:
        """The new config and each operation's token (its token file read now), or one
        ConfigError with every problem."""
        assert self.path is not None
        new = config.load(self.path)
        problems = []
        for name in ("state", "web"):
            if getattr(new, name) != getattr(self.running, name):
                problems.append(f"{name}: changes to it need a restart; the running value is kept")
        tokens: dict[str, str] = {}
        for i, op in enumerate(new.operations):
            try:
                tokens[op.name] = op.secret()
            except OSError as exc:
                problems.append(
                    f"operations.{i}.token_file: cannot read {op.token_file}: {exc.strerror}"
                )
                continue
            if not tokens[op.name]:
                problems.append(f"operations.{i}.token_file: {op.token_file} is empty")
        if problems:
            raise config.ConfigError(f"config not reloaded: {self.path}", problems)
        return new, tokens

    def _apply(self, new: config.Config, tokens: dict[str, str]) -> Change:
        # New tokens are masked in logs before a line could hold one.
        self.redacting.secrets = list(dict.fromkeys([*self.redacting.secrets, *tokens.values()]))
        self.gate.spacing = new.polling.request_spacing
        change = self.fleet.apply(new.per_operation(), tokens)
        self.running = new
        return change

    def _refused(self, source: str, exc: config.ConfigError) -> tuple[bool, str]:
        self.status = ReloadStatus(successful=False, last_success=self.status.last_success)
        log.error(
            "config not reloaded; the running config is kept",
            extra={"source": source, "path": self.path, "problems": len(exc.details)},
        )
        for detail in exc.details or [exc.message]:
            log.error("config problem", extra={"path": self.path, "problem": detail})
        return False, str(exc)


def _summary(change: Change) -> str:
    parts = [
        f"{what} {', '.join(names)}"
        for what, names in (
            ("added", change.added),
            ("removed", change.removed),
            ("changed", change.changed),
        )
        if names
    ]
    return "; ".join(parts) or "no operation changed"
