"""Saving what was counted, so a restart neither re-counts nor skips a row.

The file holds, per operation, the cursor, every counter value and the dedupe fingerprints still
inside the re-read horizon. It is written atomically (temp file, fsync, rename, fsync of the
directory), so a crash at any instant leaves either the previous file or the new one. It is decoded
against a typed schema: a damaged file fails as a whole instead of half-loading, is moved aside with
a clear log line, and the exporter starts fresh rather than crash-looping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

VERSION = 2

Key = tuple[str, str, str]


class OperationState(msgspec.Struct, forbid_unknown_fields=True):
    cursor: int | None
    origin: int | None
    interactions: list[tuple[str, str, str, int]]
    received: int
    duplicates: int
    rejected: dict[str, int]
    overflow: dict[str, int]
    requests: dict[str, int]
    by_window: dict[int, list[tuple[str, str, str, int]]]
    last_window: list[tuple[str, str, str, int, float]]  # label set, value, last non-zero time
    seen: list[tuple[int, bytes, int]]  # second filed under, fingerprint, copies
    quota_paused_until: float | None = None
    outcomes: list[tuple[str, str, int]] = []  # channel, outcome, count
    sessions_total: dict[str, int] = {}
    transferred_total: dict[str, int] = {}
    sessions: list[tuple[int, int, bool]] = []  # bucket filed under, session digest, transferred
    customers_last_window: dict[str, int] = {}  # counts only; the customer hashes are not saved
    skipped_seconds: int = 0  # given up past max_catchup, never counted
    last_skip: float | None = None  # when the last span was given up
    outside_range: int = 0  # counted rows dated outside the range that returned them
    newest: int | None = None  # the date of the newest row counted


class StateFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    saved_at: float
    operations: dict[str, OperationState]


_DECODER = msgspec.json.Decoder(StateFile)
_ENCODER = msgspec.json.Encoder()


class StateStore:
    """The state file of the whole process; each operation updates its own entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._operations: dict[str, OperationState] = {}
        self.save_failures = 0  # for wolkvox_state_save_failures_total
        self.last_save_ok = True  # /-/ready is false while saves fail

    def check_writable(self) -> None:
        """Raise OSError, with a reason, unless a state file can be written where configured:
        found at start, not as a log line at every poll."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".{self.path.name}.{os.getpid()}.probe"
        try:
            with open(probe, "wb") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        finally:
            probe.unlink(missing_ok=True)
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise PermissionError(f"{self.path} is not writable")

    def remove_leftovers(self) -> None:
        """Delete temp files that crashed saves left behind (`.state.json.<pid>.tmp` of processes
        that are gone), so they do not pile up across crashes."""
        prefix = f".{self.path.name}."
        for leftover in self.path.parent.glob(f"{prefix}*.tmp"):
            pid = leftover.name[len(prefix) : -len(".tmp")]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            try:
                leftover.unlink()
                log.info(
                    "removed a temp file of an interrupted save", extra={"path": str(leftover)}
                )
            except OSError:
                pass

    def load(self) -> dict[str, OperationState]:
        """Read the file if there is one; a damaged one is moved aside and an empty state returned."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no state file yet; starting fresh", extra={"path": str(self.path)})
            return {}
        except OSError as exc:
            self._set_aside(f"cannot read it: {exc.strerror}")
            return {}
        try:
            state = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._set_aside(f"not a valid state file: {exc}")
            return {}
        if state.version != VERSION:
            self._set_aside(f"state file version {state.version}, this exporter reads {VERSION}")
            return {}
        with self._lock:
            self._operations = dict(state.operations)
        log.info(
            "state loaded",
            extra={
                "path": str(self.path),
                "operations": len(state.operations),
                "saved_at": state.saved_at,
            },
        )
        return dict(state.operations)

    def _set_aside(self, reason: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, aside)
            moved = f"moved aside to {aside}"
        except OSError as exc:
            moved = f"could not move it aside ({exc.strerror})"
        log.error(
            "state file unusable; starting fresh without it",
            extra={"path": str(self.path), "reason": reason, "action": moved},
        )

    def save(self, name: str, state: OperationState) -> None:
        """Replace one operation's entry and write the whole file atomically."""
        with self._lock:
            self._operations[name] = state
            payload = _ENCODER.encode(
                StateFile(version=VERSION, saved_at=time.time(), operations=self._operations)
            )
            try:
                atomic_write(self.path, payload)
            except OSError as exc:
                self.save_failures += 1
                self.last_save_ok = False
                log.error(
                    "could not save state; a restart would resume from the last good save",
                    extra={"path": str(self.path), "error": exc.strerror},
                )
            else:
                self.last_save_ok = True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def atomic_write(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` so that a crash at any instant leaves the old or the new file:
    temp file, fsync, rename, fsync of the directory."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
