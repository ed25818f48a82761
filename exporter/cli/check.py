"""`check`: validate a config (and, with --connect, the API access) before deploying it."""

from __future__ import annotations

import argparse

from exporter.api.client import TokenGate
from exporter.cli.arguments import Subparsers, fail, unwritable
from exporter.exposition import webconfig
from exporter.settings import config
from exporter.state.store import StateStore
from exporter.tools import diagnose


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "check",
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
    p.set_defaults(command=command)


def command(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
        if args.web_config:
            security = webconfig.load(args.web_config, serving=False)
            problem = webconfig.http2_problem(security.config)
            if problem:  # as promtool: the file is valid, but a server would not start with it
                print(f"web config: warning: the exporter would not start: {problem}")
    except config.ConfigError as exc:
        return fail(str(exc))
    if cfg.state.path is not None and (problem := unwritable(StateStore(cfg.state.path))):
        return fail(problem)
    print(
        f"config OK: {len(cfg.operations)} operation(s): {', '.join(o.name for o in cfg.operations)}"
    )
    if not args.connect:
        return 0
    gate = TokenGate(cfg.polling.request_spacing)
    failed = 0
    for settings in cfg.per_operation():
        op = settings.operation
        report = diagnose.diagnose(settings, gate)
        print(f"{op.name}: {report.lines[0]}")
        for line in report.lines[1:]:
            print(f"  {line}")
        failed += not report.ok
    return 1 if failed else 0
