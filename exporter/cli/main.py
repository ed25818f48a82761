"""Command line: run the exporter, check a config, or run the simulated API on its own."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, ProcessCollector

from exporter import __version__, logs
from exporter.api.client import TokenGate
from exporter.exposition import server, webconfig
from exporter.exposition.collector import WolkvoxCollector
from exporter.polling.poller import Poller
from exporter.settings import config
from exporter.state.store import StateStore
from exporter.tools import backfill, diagnose, healthcheck, simulator

log = logging.getLogger("exporter")

DEMO_TOKEN = "demo-token-not-secret"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"WOLKVOX_EXPORTER_{name}", default)


def _config_argument(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--config",
        "--config.file",
        dest="config",
        default=_env("CONFIG"),
        metavar="FILE",
        help=help,
    )


def _listen_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The listen address, read the same way by the exporter and by its health check."""
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        default=_env("LISTEN_ADDRESS"),
        metavar="HOST:PORT",
        help=help,
    )


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter",
        description="Prometheus exporter for Wolkvox interaction routing and chatbots (diagram_9). "
        "Subcommands: 'check --config FILE [--connect]' validates a config (and the API access); "
        "'backfill' writes past data for promtool; 'simulate' runs the simulated API; "
        "'healthcheck' probes a running exporter (a container's HEALTHCHECK).",
    )
    _config_argument(p, "YAML config file (env WOLKVOX_EXPORTER_CONFIG)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="run against the built-in simulated Wolkvox API on loopback; needs no config or token",
    )
    _listen_argument(
        p,
        f"address to serve metrics on; overrides web.listen_address "
        f"(default {config.DEFAULT_LISTEN_ADDRESS}; env WOLKVOX_EXPORTER_LISTEN_ADDRESS)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        default=_env("WEB_CONFIG_FILE"),
        metavar="FILE",
        help="exporter-toolkit web config: TLS and basic auth (env WOLKVOX_EXPORTER_WEB_CONFIG_FILE)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default=_env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warn", "warning", "error"],
        help="minimum log level (default info; env WOLKVOX_EXPORTER_LOG_LEVEL)",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        default=_env("LOG_FORMAT", "logfmt"),
        choices=["logfmt", "json"],
        help="log line format (default logfmt; env WOLKVOX_EXPORTER_LOG_FORMAT)",
    )
    p.add_argument("--version", action="version", version=f"wolkvox-exporter {__version__}")
    return p


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter check",
        description="Validate a config file: exit 0 if valid, 1 if not.",
    )
    p.add_argument("--config", "--config.file", dest="config", required=True, metavar="FILE")
    p.add_argument(
        "--web.config.file", dest="web_config", metavar="FILE", help="also check this web config"
    )
    p.add_argument(
        "--connect",
        action="store_true",
        help="also call the API for each operation (a one-minute window, and token_info): "
        "reachable, token valid, daily quota used; costs two calls of quota per operation",
    )
    return p


def _backfill_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter backfill",
        description="Read a past date range from the API and write it as OpenMetrics text for "
        "`promtool tsdb create-blocks-from openmetrics`. Interrupted, the same command resumes.",
    )
    p.add_argument("--config", "--config.file", dest="config", required=True, metavar="FILE")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="DATE",
        help="first instant, inclusive: YYYY-mm-dd or YYYY-mm-ddTHH:MM:SS, wall time of each "
        "operation's timezone",
    )
    p.add_argument(
        "--to", dest="end", required=True, metavar="DATE", help="last instant, exclusive"
    )
    p.add_argument("--output", required=True, metavar="FILE", help="OpenMetrics file to write")
    p.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="NAME",
        help="backfill only this operation (repeatable; default all)",
    )
    p.add_argument(
        "--chunk",
        default="1h",
        metavar="DURATION",
        help="range per API call (default 1h); fewer calls spend less daily quota, and a chunk "
        "over the record cap is split like live polls",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add a label to every sample, e.g. job=wolkvox and instance=HOST:9856 so backfilled "
        "series continue the scraped ones (repeatable)",
    )
    p.add_argument(
        "--write-state",
        action="store_true",
        help="start the live exporter's counters (state.path) from the backfilled totals at --to",
    )
    return p


def _healthcheck_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter healthcheck",
        description="Probe the exporter running on this host: exit 0 if it answers, 1 if not. "
        "Finds its address as the exporter does (flag, env, config file, default); a 401 or a "
        "TLS answer counts as alive, so no credentials are needed.",
    )
    _config_argument(
        p,
        "the exporter's config file, for web.listen_address; a missing file is no error "
        "(the exporter may run with --demo)",
    )
    _listen_argument(p, "the exporter's listen address (env WOLKVOX_EXPORTER_LISTEN_ADDRESS)")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait (default 4)")
    return p


def _simulate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wolkvox-exporter simulate",
        description="Serve the simulated Wolkvox diagram_9 API (for trying the exporter and for tests).",
    )
    p.add_argument("--listen", default="127.0.0.1:8089", metavar="HOST:PORT")
    p.add_argument(
        "--token", action="append", required=True, help="a token the API accepts (repeatable)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timezone", default="America/Bogota")
    p.add_argument("--rate", type=float, default=120.0, help="records per minute at the daily peak")
    p.add_argument("--flat", action="store_true", help="no daily curve: the same rate all day")
    p.add_argument("--late-fraction", type=float, default=0.05)
    p.add_argument("--late-max", type=float, default=120.0, help="seconds a late record may lag")
    p.add_argument("--duplicate-fraction", type=float, default=0.01)
    p.add_argument("--cap", type=int, default=6000, help="records per answer at most")
    p.add_argument("--cap-mode", choices=["truncate", "error"], default="truncate")
    p.add_argument("--latency", type=float, default=0.02, help="seconds each answer takes")
    p.add_argument(
        "--select-by",
        choices=simulator.SELECT_BY,
        default="date",
        help="which time a request range selects rows by: their date, or when their session "
        "closed (rows then come back dated before the range)",
    )
    p.add_argument(
        "--close-delay",
        type=float,
        default=600.0,
        help="with --select-by close: seconds a session may stay open after its last row",
    )
    p.add_argument("--start", type=int, help="no traffic dated before this Unix time")
    p.add_argument("--stop", type=int, help="no traffic dated at or after this Unix time")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault into this share of requests; KIND is one of {', '.join(simulator.Faults.KINDS)}",
    )
    p.add_argument("--hang-seconds", type=float, default=5.0, help="how long a 'hang' fault waits")
    p.add_argument(
        "--token-limit", type=int, default=100_000, help="daily calls each token may make"
    )
    return p


def _unwritable(store: StateStore) -> str | None:
    """Why a state file cannot be written where configured, if it cannot."""
    try:
        store.check_writable()
    except OSError as exc:
        return f"state.path: cannot write a state file at {store.path}: {exc.strerror or exc}"
    return None


def _fail(message: str) -> int:
    print(f"wolkvox-exporter: {message}", file=sys.stderr)
    return 1


def check(argv: Sequence[str]) -> int:
    args = _check_parser().parse_args(argv)
    try:
        cfg = config.load(args.config)
        if args.web_config:
            security = webconfig.load(args.web_config, serving=False)
            problem = webconfig.http2_problem(security.config)
            if problem:  # as promtool: the file is valid, but a server would not start with it
                print(f"web config: warning: the exporter would not start: {problem}")
    except config.ConfigError as exc:
        return _fail(str(exc))
    if cfg.state.path is not None and (problem := _unwritable(StateStore(cfg.state.path))):
        return _fail(problem)
    print(
        f"config OK: {len(cfg.operations)} operation(s): {', '.join(o.name for o in cfg.operations)}"
    )
    if not args.connect:
        return 0
    gate = TokenGate(cfg.polling.request_spacing)
    failed = 0
    for op in cfg.operations:
        report = diagnose.diagnose(op, cfg.polling, gate)
        print(f"{op.name}: {report.lines[0]}")
        for line in report.lines[1:]:
            print(f"  {line}")
        failed += not report.ok
    return 1 if failed else 0


def backfill_command(argv: Sequence[str]) -> int:
    args = _backfill_parser().parse_args(argv)
    try:
        cfg = config.load(args.config)
        logs.setup("info", "logfmt", secrets=[op.secret() for op in cfg.operations])
        chunk = config.parse_duration(args.chunk)
        interval = int(cfg.polling.interval)
        if chunk < interval or chunk % interval:
            raise backfill.BackfillError(
                f"--chunk must be a whole number of polling intervals ({interval}s)"
            )
        names = {op.name for op in cfg.operations}
        unknown = sorted(set(args.operation) - names)
        if unknown:
            raise backfill.BackfillError(f"--operation: no operation named {', '.join(unknown)}")
        ops = [op for op in cfg.operations if not args.operation or op.name in args.operation]
        request = backfill.Request(
            config=cfg,
            start_text=args.start,
            end_text=args.end,
            output=Path(args.output),
            operations=ops,
            chunk=int(chunk),
            labels=backfill.check_labels(args.label),
        )
        summary = backfill.Backfill(request).run()
        if args.write_state:
            backfill.write_state(cfg, summary.tallies, summary.ranges)
    except (config.ConfigError, backfill.BackfillError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or args.output}: {exc.strerror}; run again to resume")
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    counted = sum(sum(t.counts.interactions.values()) for t in summary.tallies.values())
    print(
        f"wrote {args.output}: {summary.windows} windows, {counted} interactions, "
        f"{summary.samples} samples, {summary.requests} API calls"
        + (" (resumed)" if summary.resumed else "")
    )
    print(f"next: promtool tsdb create-blocks-from openmetrics {args.output} <prometheus data dir>")
    return 0


def healthcheck_command(argv: Sequence[str]) -> int:
    args = _healthcheck_parser().parse_args(argv)
    listen = args.listen
    if not listen and args.config and Path(args.config).exists():
        try:
            listen = config.load(args.config).web.listen_address
        except config.ConfigError as exc:
            print(f"unhealthy: {exc}")
            return 1
    try:
        verdict = healthcheck.check(listen or config.DEFAULT_LISTEN_ADDRESS, args.timeout)
    except ValueError as exc:
        print(f"unhealthy: --web.listen-address: {exc}")
        return 1
    print(f"{'healthy' if verdict.alive else 'unhealthy'}: {verdict.reason}")
    return 0 if verdict.alive else 1


def simulate(argv: Sequence[str]) -> int:
    args = _simulate_parser().parse_args(argv)
    try:
        host, port = config.split_listen_address(args.listen)
        zone = ZoneInfo(args.timezone)
        faults = simulator.Faults(hang_seconds=args.hang_seconds, seed=args.seed)
        for item in args.fault:
            kind, _, rate = item.partition("=")
            if kind not in simulator.Faults.KINDS:
                raise ValueError(f"--fault {item}: unknown kind {kind!r}")
            setattr(faults, kind, float(rate))
    except Exception as exc:
        return _fail(str(exc))
    traffic = simulator.Traffic(
        seed=args.seed,
        zone=zone,
        rate_per_minute=args.rate,
        daily_curve=not args.flat,
        late_fraction=args.late_fraction,
        late_max=args.late_max,
        duplicate_fraction=args.duplicate_fraction,
        start=args.start,
        stop=args.stop,
        select_by=args.select_by,
        close_delay=args.close_delay,
    )
    sim = simulator.Simulator(
        {"default": traffic},
        set(args.token),
        cap=args.cap,
        cap_mode=args.cap_mode,
        latency=args.latency,
        faults=faults,
        token_limit=args.token_limit,
        quota_zone=zone,
    )
    srv, url = simulator.serve(sim, host or "127.0.0.1", port)
    print(f"simulated Wolkvox API at {url}/api/v2/reports_manager.php", flush=True)
    _wait_for_signal(None)
    srv.shutdown()
    return 0


def _demo_config() -> config.Config:
    tenants = {
        "bogota": simulator.Traffic(
            seed=1, zone=ZoneInfo("America/Bogota"), rate_per_minute=300, late_max=30
        ),
        "mexico": simulator.Traffic(
            seed=2, zone=ZoneInfo("America/Mexico_City"), rate_per_minute=150, late_max=30
        ),
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
        }
    )


def _wait_for_signal(security: webconfig.Security | None) -> None:
    """Until SIGTERM or SIGINT. SIGHUP re-reads the web config (certificates rotated by
    cert-manager, say) instead of killing the process as it would by default."""
    wake = threading.Event()  # set by every handler; waited on without a timeout, so an idle
    done = threading.Event()  # exporter does not wake twice a second for nothing
    hangups = threading.Event()

    def handler(event: threading.Event) -> Callable[..., None]:
        def handle(*_: object) -> None:
            event.set()
            wake.set()

        return handle

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler(done))
    signal.signal(signal.SIGHUP, handler(hangups))
    while not done.is_set():
        wake.wait()
        wake.clear()
        if hangups.is_set():
            hangups.clear()
            if security is None:
                log.info("SIGHUP: no --web.config.file to re-read; the config file needs a restart")
            else:
                security.reload("SIGHUP")


def run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.demo == bool(args.config):
        return _fail("give either --config FILE or --demo (see --help)")
    try:
        cfg = _demo_config() if args.demo else config.load(args.config)
        listen = args.listen or cfg.web.listen_address
        host, port = config.split_listen_address(listen)
    except config.ConfigError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(f"--web.listen-address: {exc}")
    level = "warning" if args.log_level == "warn" else args.log_level
    logs.setup(level, args.log_format, secrets=[op.secret() for op in cfg.operations])
    try:
        # After logging starts, so that its warnings (keys without effect) are logged.
        security = webconfig.load(args.web_config) if args.web_config else None
    except config.ConfigError as exc:
        return _fail(str(exc))

    if cfg.polling.interval < 300 and not args.demo:
        log.warning(
            "polling.interval is below the 5m the vendor recommends; each poll costs daily quota",
            extra={"interval": config.format_duration(cfg.polling.interval)},
        )
    store = StateStore(cfg.state.path) if cfg.state.path is not None else None
    if store is not None:
        if problem := _unwritable(store):
            return _fail(problem)
        store.remove_leftovers()
    pollers = _pollers(cfg, store)
    registry = CollectorRegistry(auto_describe=False)
    collector = WolkvoxCollector(pollers, cfg.polling.interval, store)
    registry.register(collector)
    try:
        live = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=live)  # process_*: the standard self-metrics of an exporter
        httpd, _ = server.serve(
            server.App(registry, pollers, security, live, collector.page), host, port
        )
    except OSError as exc:
        return _fail(f"cannot listen on {listen}: {exc.strerror}")
    log.info(
        "wolkvox-exporter started",
        extra={
            "version": __version__,
            "listen": listen,
            "operations": len(pollers),
            "demo": args.demo,
        },
    )
    for p in pollers:
        p.start()
    _wait_for_signal(security)
    log.info("shutting down: abandoning requests in flight and saving state")
    httpd.shutdown()
    _stop(pollers, store)
    log.info("stopped")
    return 0


def _pollers(cfg: config.Config, store: StateStore | None) -> list[Poller]:
    """One poller per operation, resumed from the saved state; they share the token gate."""
    gate = TokenGate(cfg.polling.request_spacing)
    saved = store.load() if store is not None else {}
    return [
        Poller(
            op, cfg.polling, cfg.labels, gate, store=store, saved=saved.get(op.name), kpis=cfg.kpis
        )
        for op in cfg.operations
    ]


def _stop(pollers: Sequence[Poller], store: StateStore | None) -> None:
    """Stop every poller at once (requests in flight are abandoned), then save each."""
    for p in pollers:
        p.stop.set()
    for p in pollers:
        p.shutdown()
        p.save()
    if store is not None:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":
        return check(argv[1:])
    if argv and argv[0] == "simulate":
        return simulate(argv[1:])
    if argv and argv[0] == "backfill":
        return backfill_command(argv[1:])
    if argv and argv[0] == "healthcheck":
        return healthcheck_command(argv[1:])
    return run(argv)

