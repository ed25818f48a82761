"""Running the exporter: one poller per operation, the HTTP server, until a signal stops it."""

from __future__ import annotations

import argparse
import functools
import logging
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, ProcessCollector

from exporter import __version__, logs
from exporter.api.client import TokenGate
from exporter.cli.arguments import (
    config_argument,
    env,
    fail,
    listen_argument,
    unwritable,
)
from exporter.cli.reloading import Reloader
from exporter.cli.signals import block_signals, wait_for_signal
from exporter.exposition import server, webconfig
from exporter.exposition.collector import WolkvoxCollector
from exporter.polling.fleet import Fleet
from exporter.settings import config, durations
from exporter.state.store import StateStore
from exporter.tools import simulator

log = logging.getLogger("exporter")

DEMO_TOKEN = "demo-token-not-secret"
DEMO_SESSION_TIMEOUT = "20s"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter",
        description="Prometheus exporter for Wolkvox interaction routing and chatbots (diagram_9). "
        "Subcommands: 'check --config FILE [--connect]' validates a config (and the API access); "
        "'backfill' writes past data for promtool; 'simulate' runs the simulated API; "
        "'healthcheck' probes a running exporter (a container's HEALTHCHECK).",
    )
    config_argument(p, "YAML config file (env WOLKVOX_EXPORTER_CONFIG)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="run against the built-in simulated Wolkvox API on loopback; needs no config or token",
    )
    listen_argument(
        p,
        f"address to serve metrics on; overrides web.listen_address "
        f"(default {config.DEFAULT_LISTEN_ADDRESS}; env WOLKVOX_EXPORTER_LISTEN_ADDRESS)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        default=env("WEB_CONFIG_FILE"),
        metavar="FILE",
        help="exporter-toolkit web config: TLS and basic auth (env WOLKVOX_EXPORTER_WEB_CONFIG_FILE)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default=env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warn", "warning", "error"],
        help="minimum log level (default info; env WOLKVOX_EXPORTER_LOG_LEVEL)",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        default=env("LOG_FORMAT", "logfmt"),
        choices=["logfmt", "json"],
        help="log line format (default logfmt; env WOLKVOX_EXPORTER_LOG_FORMAT)",
    )
    p.add_argument("--version", action="version", version=f"wolkvox-exporter {__version__}")
    return p


def _demo_config() -> config.Config:
    block_signals()  # before the simulator's thread starts
    # Conversations a tenth as long as real ones (seconds between messages, regulars back
    # within minutes), so that sessions end and re-contacts show in the first minutes.
    # Steady day and night: with the simulated daily curve, a demo started in the evening
    # of the Americas showed a twelfth of this and panels stayed empty for minutes.
    traffic = functools.partial(simulator.Traffic, daily_curve=False, late_max=30, think=0.1)
    tenants = {
        "bogota": traffic(seed=1, zone=ZoneInfo("America/Bogota"), rate_per_minute=300),
        "mexico": traffic(seed=2, zone=ZoneInfo("America/Mexico_City"), rate_per_minute=150),
    }
    sim = simulator.Simulator(tenants, {DEMO_TOKEN})
    _, url = simulator.serve(sim)
    return config.from_mapping(
        {
            "operations": [
                # Both share one token, as operations of one licence often do: the exporter
                # serialises their requests so the API never sees the token twice at once.
                {
                    "name": "demo-bogota",
                    "base_url": f"{url}/bogota",
                    "token": DEMO_TOKEN,
                    "timezone": "America/Bogota",
                },
                {
                    "name": "demo-mexico",
                    "base_url": f"{url}/mexico",
                    "token": DEMO_TOKEN,
                    "timezone": "America/Mexico_City",
                },
            ],
            "polling": {
                "interval": "15s",
                "settle_delay": "5s",
                "lookback": "1m",
                "request_spacing": "200ms",
                "token_info_interval": "1h",
            },
            "kpis": {"session_timeout": DEMO_SESSION_TIMEOUT, "recontact_window": "1h"},
        }
    )


def command(args: argparse.Namespace) -> int:
    if args.demo == bool(args.config):
        return fail("give either --config FILE or --demo (see --help)")
    try:
        cfg = _demo_config() if args.demo else config.load(args.config)
        listen = args.listen or cfg.web.listen_address
        host, port = config.split_listen_address(listen)
    except config.ConfigError as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(f"--web.listen-address: {exc}")
    level = "warning" if args.log_level == "warn" else args.log_level
    redacting = logs.setup(level, args.log_format, secrets=[op.secret() for op in cfg.operations])
    try:
        # After logging starts, so that its warnings (keys without effect) are logged.
        security = webconfig.load(args.web_config) if args.web_config else None
    except config.ConfigError as exc:
        return fail(str(exc))
    if cfg.polling.interval < 300 and not args.demo:
        log.warning(
            "polling.interval is below the 5m the vendor recommends; each poll costs daily quota",
            extra={"interval": durations.format_duration(cfg.polling.interval)},
        )
    store = StateStore(cfg.state.path) if cfg.state.path is not None else None
    if store is not None:
        if problem := unwritable(store):
            return fail(problem)
        store.remove_leftovers()
    gate = TokenGate(cfg.polling.request_spacing)  # one for the process, kept through reloads
    fleet = Fleet(gate, store)
    fleet.restore(cfg.per_operation())
    reloader = Reloader(args.config, cfg, fleet, gate, security, redacting)
    block_signals()  # before the server's and the pollers' threads start
    try:
        notes = [_sessions_note(cfg, args.demo)]
        httpd = _serve(cfg, fleet, store, security, reloader, host, port, notes)
    except OSError as exc:
        return fail(f"cannot listen on {listen}: {exc.strerror}")
    log.info(
        "wolkvox-exporter started",
        extra={
            "version": __version__,
            "listen": listen,
            "operations": len(cfg.operations),
            "demo": args.demo,
        },
    )
    fleet.start()
    wait_for_signal(lambda: reloader.reload("SIGHUP"))
    log.info("shutting down: abandoning requests in flight and saving state")
    httpd.shutdown()
    fleet.shutdown()
    log.info("stopped")
    return 0


def _sessions_note(cfg: config.Config, demo: bool) -> str:
    """When conversation figures appear, as the landing page says it."""
    timeout = durations.format_duration(cfg.kpis.session_timeout)
    note = (
        f"A session ends {timeout} after its last record (kpis.session_timeout); its "
        "conversation figures (wolkvox_sessions_ended_total and the rest) count it then."
    )
    if demo:
        note += (
            f" This demo simulates conversations ten times faster than real ones and ends them "
            f"after {timeout} of silence, so the figures appear within minutes; Wolkvox's own "
            "timeout is 60m, the default."
        )
    return note


def _serve(
    cfg: config.Config,
    fleet: Fleet,
    store: StateStore | None,
    security: webconfig.Security | None,
    reloader: Reloader,
    host: str,
    port: int,
    notes: list[str],
) -> server.Server:
    """/metrics and the rest, served from the fleet's pollers of the moment."""
    registry = CollectorRegistry(auto_describe=False)
    reloads = reloader if reloader.path is not None else None  # --demo has no file to reload
    collector = WolkvoxCollector(fleet, cfg.polling.interval, store, reloads)
    registry.register(collector)
    live = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=live)  # process_*: the standard self-metrics of an exporter
    app = server.App(
        registry,
        fleet,
        security,
        live,
        collector.page,
        [store] if store else [],
        reload=lambda: reloader.reload("POST /-/reload"),
        reloads=reloads,
        notes=notes,
    )
    httpd, _ = server.serve(app, host, port)
    return httpd
