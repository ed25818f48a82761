"""`healthcheck`: probe the exporter on this host, for a container's HEALTHCHECK."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli.arguments import (
    Subparsers,
    config_argument,
    listen_argument,
)
from exporter.settings import config
from exporter.tools import healthcheck


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "healthcheck",
        description="Probe the exporter running on this host: exit 0 if it answers, 1 if not. "
        "Finds its address as the exporter does (flag, env, config file, default); a 401 or a "
        "TLS answer counts as alive, so no credentials are needed.",
    )
    config_argument(
        p,
        "the exporter's config file, for web.listen_address; a missing file is no error "
        "(the exporter may run with --demo)",
    )
    listen_argument(p, "the exporter's listen address (env WOLKVOX_EXPORTER_LISTEN_ADDRESS)")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait (default 4)")
    p.set_defaults(command=command)


def command(args: argparse.Namespace) -> int:
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
