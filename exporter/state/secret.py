"""The secret that keys the digests of customers kept for re-contacts.

A phone number has few enough possible values to be found from a plain hash by trying them all,
so what the state database keeps of a customer is a digest keyed with this secret, which lives in
a file of its own beside the database (mode 0600): the database alone, a backup of it, or a copy
attached to a ticket cannot be turned back into phone numbers. It is never logged or exported.
Losing it costs only the re-contacts of customers already remembered.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

SIZE = 32  # bytes, written as hex


def path_for(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".key")


def load_or_create(path: Path) -> bytes:
    """The secret in `path`, created (mode 0600) if missing. A file that does not hold one is
    moved aside with a log line and replaced; a file others may read is made private."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create(path)
    except (UnicodeDecodeError, ValueError):
        text = ""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != SIZE:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        log.error(
            "customer digest key unusable; a new one is made (earlier customers are not "
            "recognised as re-contacts)",
            extra={"path": str(path), "moved_to": str(aside)},
        )
        return _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning(
            "customer digest key was readable by others; made private",
            extra={"path": str(path), "mode": oct(mode)},
        )
    return key


def ephemeral() -> bytes:
    """A key for this process only (no state database, or none writable)."""
    return secrets.token_bytes(SIZE)


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("created the customer digest key", extra={"path": str(path)})
    return key
