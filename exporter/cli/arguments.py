"""What the subcommands share: environment defaults, the config and listen-address flags, and
how a refusal is printed."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TypeAlias

from exporter.state.store import StateStore

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"WOLKVOX_EXPORTER_{name}", default)


def config_argument(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--config",
        "--config.file",
        dest="config",
        default=env("CONFIG"),
        metavar="FILE",
        help=help,
    )


def listen_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The listen address, read the same way by the exporter and by its health check."""
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        default=env("LISTEN_ADDRESS"),
        metavar="HOST:PORT",
        help=help,
    )


def unwritable(store: StateStore) -> str | None:
    """Why a state file cannot be written where configured, if it cannot."""
    try:
        store.check_writable()
    except OSError as exc:
        return f"state.path: cannot write a state file at {store.path}: {exc.strerror or exc}"
    return None


def fail(message: str) -> int:
    print(f"wolkvox-exporter: {message}", file=sys.stderr)
    return 1
