"""The command line: `wolkvox-exporter` runs the exporter; its subcommands check a config,
backfill history, run the simulated API and probe a running exporter."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter.cli import backfill, check, healthcheck, run, simulate


def parser() -> argparse.ArgumentParser:
    """The exporter's own flags, and a subcommand each for the tools beside it."""
    p = run.parser()
    sub = p.add_subparsers(title="subcommands", metavar="COMMAND")
    for module in (check, backfill, simulate, healthcheck):
        module.add_parser(sub)
    p.set_defaults(command=run.command)
    return p


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by name (`run` is the exporter's own), for the docs' flag table."""
    top = parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"run": top, **subs.choices}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    code: int = args.command(args)
    return code
