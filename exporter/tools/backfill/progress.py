"""What an interrupted backfill needs to resume, and what a person watching it sees.

OpenMetrics wants each metric family in one block, but samples come in time order; so samples are
appended to one spool file per family and the output is assembled at the end. A progress file
next to the output (each operation's tally state and cursor, and the spool sizes) is saved after
each chunk, so an interrupted backfill resumes where it stopped; spools are cut back to the last
save.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from exporter.state.store import OperationState, atomic_write
from exporter.tools.backfill.request import BackfillError

log = logging.getLogger(__name__)

PROGRESS_VERSION = 2  # 1 was JSON, which cannot key counts by label set


class OperationProgress(msgspec.Struct):
    cursor: int
    done: bool
    state: OperationState


class _Saved(msgspec.Struct):
    version: int
    signature: str
    operations: dict[str, OperationProgress]
    spool: dict[str, int]  # family -> bytes written at the last save


class Spool:
    """One append-only file of sample lines per family, cut back to a size on resume."""

    def __init__(self, directory: Path, families: list[str]) -> None:
        self.directory = directory  # made on the first write: a refused run leaves nothing
        self.families = families
        self._files: dict[str, IO[bytes]] = {}

    def path(self, family: str) -> Path:
        return self.directory / f"{family}.om"

    def cut(self, sizes: dict[str, int]) -> None:
        """Drop whatever was written after the last save (an interrupted chunk)."""
        for family in self.families:
            path = self.path(family)
            size = sizes.get(family, 0)
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(size)
            elif size:
                raise BackfillError(f"{path} is missing; delete the progress file to start over")

    def write(self, family: str, line: bytes) -> None:
        f = self._files.get(family)
        if f is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            f = self._files[family] = open(self.path(family), "ab")  # noqa: SIM115
        f.write(line)

    def flush(self) -> dict[str, int]:
        for f in self._files.values():
            f.flush()
        return {family: self.path(family).stat().st_size for family in self._files}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class Progress:
    """Windows done, records and ETA: a bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.done = 0
        self.skipped = 0
        self.records = 0
        self.started = time.monotonic()
        self._last_line = 0.0
        self._stream = stream or sys.stderr
        self._terminal = self._stream.isatty()
        self._bar: Any = None

    def advance(self, windows: int, records: int, skipped: bool = False) -> None:
        self.done += windows
        self.skipped += windows if skipped else 0
        self.records += records
        if self._terminal:
            if skipped:
                return
            if self._bar is None:
                from tqdm import tqdm

                # Drawn from the first window fetched, with the resumed ones as its start, so
                # that its rate and ETA reflect this run's work only.
                self._bar = tqdm(
                    total=self.total,
                    initial=self.done - windows,
                    unit="window",
                    file=self._stream,
                    dynamic_ncols=True,
                )
            self._bar.update(windows)
            self._bar.set_postfix(records=self.records, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= 5 or self.done >= self.total:
            self._last_line = now
            elapsed = now - self.started
            rate = (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            log.info(
                "backfill progress",
                extra={
                    "windows": f"{self.done}/{self.total}",
                    "records": self.records,
                    "eta": f"{eta:.0f}s",
                },
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ProgressFile:
    """The progress of one backfill, tied by `signature` to the arguments that made it."""

    def __init__(self, path: Path, signature: str, spool: Spool) -> None:
        self.path = path
        self.signature = signature
        self.spool = spool
        self.saved: _Saved | None = None

    def operation(self, name: str) -> OperationProgress | None:
        return self.saved.operations.get(name) if self.saved else None

    def load(self) -> bool:
        """Whether a run with these arguments was interrupted; its spools are cut back to its
        last save."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        if data.startswith(b"{"):
            raise BackfillError(
                f"{self.path} was written by an earlier release; finish that backfill "
                f"with it, or delete the file and {self.spool.directory} to start over"
            )
        try:
            saved = msgspec.msgpack.decode(data, type=_Saved)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BackfillError(
                f"{self.path} is damaged ({exc}); delete it and {self.spool.directory} "
                "to start over"
            ) from None
        if saved.version != PROGRESS_VERSION or saved.signature != self.signature:
            raise BackfillError(
                f"{self.path} belongs to a backfill with other arguments "
                f"({saved.signature}); run that again to finish it, or delete it and "
                f"{self.spool.directory} to start over"
            )
        self.spool.cut(saved.spool)
        self.saved = saved
        log.info("resuming an interrupted backfill", extra={"progress": str(self.path)})
        return True

    def save(self, name: str, progress: OperationProgress) -> None:
        """Record a finished chunk: spool sizes, cursor and counts, in one atomic write."""
        sizes = self.spool.flush()
        operations = dict(self.saved.operations) if self.saved else {}
        operations[name] = progress
        spool = {**(self.saved.spool if self.saved else {}), **sizes}
        self.saved = _Saved(PROGRESS_VERSION, self.signature, operations, spool)
        atomic_write(self.path, msgspec.msgpack.encode(self.saved))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
