"""`simulate`: serve the simulated Wolkvox API on its own, for trying the exporter."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from exporter.cli.arguments import (
    Subparsers,
    fail,
)
from exporter.cli.signals import block_signals, wait_for_signal
from exporter.settings import config
from exporter.tools import simulator


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "simulate",
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
    p.add_argument(
        "--wall-time",
        action="store_true",
        help="compare request dates with rows as wall-time strings, as an API keeping the "
        "operation's wall time does: a repeated hour's request returns both occurrences",
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
    p.set_defaults(command=command)


def command(args: argparse.Namespace) -> int:
    block_signals()  # before the server's thread starts
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
        return fail(str(exc))
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
        wall_time=args.wall_time,
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
    wait_for_signal(None)
    srv.shutdown()
    return 0
