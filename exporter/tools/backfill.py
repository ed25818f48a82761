"""Backfill: read a past date range from the API and write it as OpenMetrics for promtool.

History comes from the same parts as live polling (client, cap splitting, Tally, collector), so a
backfilled series has the live series' name, labels and values. The range is read in chunks as
large as the record cap allows (each call costs daily quota), and the records of each chunk are
replayed window by window: after each polling window the counters and window gauges are sampled,
stamped with the window's end, exactly as a live exporter would have shown them.

OpenMetrics wants each metric family in one block, but samples come in time order; so samples are
appended to one spool file per family and the output is assembled at the end. A progress file
next to the output (the Tally's state, the cursor, and the spool sizes) is saved after each chunk,
so an interrupted backfill resumes where it stopped; spools are cut back to the last save.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from exporter.api import windowing
from exporter.api.client import ApiError, Client, Outcome, TokenGate, fetch_within_cap
from exporter.api.records import WHEN_FORMAT, Answer, DateParser, Record, decode_rows
from exporter.counting.tally import Tally
from exporter.exposition import families
from exporter.polling.snapshot import Snapshot
from exporter.settings.config import Config, Operation
from exporter.state.store import OperationState, StateStore, atomic_write

log = logging.getLogger(__name__)

# The families a backfill writes: the record-derived counters and window gauges. Health metrics
# (up, request counters, latency) describe the exporter process, not the history.
BACKFILLED = tuple(
    families.BY_NAME[name]
    for name in (
        "wolkvox_interactions",
        "wolkvox_interactions_last_window",
        "wolkvox_routing_outcomes",
        "wolkvox_sessions",
        "wolkvox_sessions_transferred",
        "wolkvox_customers_last_window",
    )
)
PROGRESS_VERSION = 2  # 1 was JSON, which cannot key counts by label set
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class BackfillError(Exception):
    """A backfill that cannot start or go on; the message says what to change."""


def parse_when(text: str, zone: Any) -> int:
    """`YYYY-mm-dd` or `YYYY-mm-ddTHH:MM:SS`, wall time of the operation's zone, to epoch seconds."""
    for fmt in ("%Y-%m-%d", WHEN_FORMAT):
        try:
            wall = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(wall.replace(tzinfo=zone).timestamp())
    raise BackfillError(f"{text!r} is not a date: use YYYY-mm-dd or YYYY-mm-ddTHH:MM:SS")


class _OpProgress(msgspec.Struct):
    cursor: int
    done: bool
    state: OperationState


class _Progress(msgspec.Struct):
    version: int
    signature: str
    operations: dict[str, _OpProgress]
    spool: dict[str, int]  # family -> bytes written at the last save


@dataclass
class Request:
    """What to backfill; `signature` ties a progress file to the arguments that made it."""

    config: Config
    start_text: str
    end_text: str
    output: Path
    operations: list[Operation]
    chunk: int
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        ops = ",".join(op.name for op in self.operations)
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return (
            f"from={self.start_text} to={self.end_text} chunk={self.chunk} "
            f"interval={int(self.config.polling.interval)} operations={ops} labels={extra}"
        )


@dataclass
class Summary:
    windows: int = 0
    records: int = 0
    requests: int = 0
    samples: int = 0
    resumed: bool = False
    tallies: dict[str, Tally] = field(default_factory=dict)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # [start, end) per operation


class Spool:
    """One append-only file of sample lines per family, cut back to a size on resume."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # made on the first write: a refused run leaves nothing
        self._files: dict[str, IO[bytes]] = {}

    def path(self, family: str) -> Path:
        return self.directory / f"{family}.om"

    def cut(self, sizes: dict[str, int]) -> None:
        """Drop whatever was written after the last save (an interrupted chunk)."""
        for family in (f.name for f in BACKFILLED):
            path = self.path(family)
            size = sizes.get(family, 0)
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(size)
            elif size:
                raise BackfillError(f"{path} is missing; delete the progress file to start over")

    def write(self, family: str, line: str) -> None:
        f = self._files.get(family)
        if f is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            f = self._files[family] = open(self.path(family), "ab")  # noqa: SIM115
        f.write(line.encode())

    def flush(self) -> dict[str, int]:
        for f in self._files.values():
            f.flush()
        return {family: self.path(family).stat().st_size for family in self._files}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _collect(into: list[tuple[Answer, int, int]]) -> Callable[[Answer, int, int], None]:
    def add(answer: Answer, first: int, last: int) -> None:
        into.append((answer, first, last))

    return add


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


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


class Backfill:
    def __init__(
        self,
        request: Request,
        gate: TokenGate | None = None,
        now: Callable[[], float] = time.time,
        stream: IO[str] | None = None,
    ) -> None:
        self.request = request
        self.config = request.config
        self.interval = int(self.config.polling.interval)
        self.gate = gate or TokenGate(self.config.polling.request_spacing)
        self.now = now
        self.stream = stream
        self.progress_path = request.output.with_name(request.output.name + ".progress")
        self.spool = Spool(request.output.with_name(request.output.name + ".parts"))
        self.summary = Summary()
        self._seen_series: set[tuple[str, str]] = set()  # counter series already started at 0
        self._progress: _Progress | None = None  # as last saved

    # -- planning -------------------------------------------------------------------------

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Each operation's [start, end) in epoch seconds, validated."""
        out = {}
        settle = int(self.config.polling.settle_delay)
        for op in self.request.operations:
            start = parse_when(self.request.start_text, op.zone)
            end = parse_when(self.request.end_text, op.zone)
            if start >= end:
                raise BackfillError("--from must be before --to")
            for name, value in (("--from", start), ("--to", end)):
                if value % self.interval:
                    raise BackfillError(
                        f"{name} must fall on a polling-interval boundary "
                        f"({self.interval}s), so backfilled windows line up with live ones"
                    )
            latest = self.now() - settle
            if end > latest:
                raise BackfillError(
                    f"--to reaches into the last settle_delay ({settle}s) of operation "
                    f"{op.name}: records there may still be published; backfill up to "
                    f"{datetime.fromtimestamp(latest - latest % self.interval, op.zone):%Y-%m-%dT%H:%M:%S} at most"
                )
            out[op.name] = (start, end)
        return out

    # -- running --------------------------------------------------------------------------

    def run(self) -> Summary:
        ranges = self.summary.ranges = self.ranges()
        self._progress = progress = self._load_progress()
        if progress is None and self.request.output.exists():
            raise BackfillError(
                f"{self.request.output} exists; remove it or choose another --output"
            )
        total = sum((end - start) // self.interval for start, end in ranges.values())
        bar = Progress(total, self.stream)
        try:
            for op in self.request.operations:
                start, end = ranges[op.name]
                saved = progress.operations.get(op.name) if progress else None
                if saved is not None and saved.done:
                    bar.advance((end - start) // self.interval, 0, skipped=True)
                    self.summary.tallies[op.name] = self._tally(op, saved.state)
                    continue
                self._operation(op, start, end, saved, bar)
        finally:
            bar.close()
            self.spool.close()
        self._assemble()
        return self.summary

    def _tally(self, op: Operation, state: OperationState | None) -> Tally:
        tally = Tally(op.zone, self.interval, self.config.labels, self.config.kpis)
        if state is not None:
            tally.restore(state.tally)
        return tally

    def _operation(
        self,
        op: Operation,
        start: int,
        end: int,
        saved: _OpProgress | None,
        bar: Progress,
    ) -> None:
        tally = self._tally(op, saved.state if saved else None)
        self.summary.tallies[op.name] = tally
        cursor = saved.cursor if saved else start
        if cursor > start:
            bar.advance((cursor - start) // self.interval, 0, skipped=True)
            # Counter series that have samples already must not get another starting 0.
            for family, series, _line in self._lines(op.name, tally, cursor):
                self._seen_series.add((family, series))
        client = Client.for_operation(op, self.config.polling, self.gate, self._observe)
        lookback = int(self.config.polling.lookback)
        try:
            while cursor < end:
                chunk_end = min(cursor + self.request.chunk, end)
                answers: list[tuple[Answer, int, int]] = []
                try:
                    fetch_within_cap(
                        client,
                        cursor,
                        chunk_end - 1,
                        self.config.polling.max_records_per_request,
                        _collect(answers),
                        op.name,
                    )
                except ApiError as exc:
                    if exc.outcome is Outcome.QUOTA_EXCEEDED:
                        raise BackfillError(
                            f"operation {op.name}: the daily API quota is used up; run the same "
                            "command again after the operation's local midnight to resume"
                        ) from None
                    raise BackfillError(
                        f"operation {op.name}: {exc}; run the same command again to resume"
                    ) from None
                records = sum(a.size for a, _, _ in answers)
                # The Tally's own parser: the dates it caches here are the ones ingest looks up.
                by_window = self._by_window(answers, tally.parse_date, cursor, chunk_end)
                for w in range(cursor, chunk_end, self.interval):
                    for rows, lo, hi in by_window.get(w, []):
                        tally.ingest(rows, lo, hi, (w, w))
                    t = w + self.interval
                    tally.publish(w, float(t), w - lookback - 2 * self.interval)
                    tally.forget_before(windowing.retention_floor(t, start, lookback))
                    self._emit(op.name, tally, w, t)
                self.summary.windows += (chunk_end - cursor) // self.interval
                self.summary.records += records
                bar.advance((chunk_end - cursor) // self.interval, records)
                cursor = chunk_end
                self._save(op.name, cursor, cursor >= end, tally)
        finally:
            client.close()

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        self.summary.requests += 1

    def _by_window(
        self, answers: list[tuple[Answer, int, int]], parser: DateParser, first: int, end: int
    ) -> dict[int, list[tuple[Answer, int, int]]]:
        """Each answer's rows by the window of their date, as one answer per (answer, window),
        with the range that returned them. Samples are written in time order, so rows dated
        before the chunk count in its first window and rows dated after it in its last, as a
        live poll counts them; rows that cannot be dated go to the first window, where the
        Tally rejects them. Answers are kept apart because cap-split halves share a second the
        Tally must dedupe."""
        out: dict[int, list[tuple[Answer, int, int]]] = {}
        last_window = end - self.interval
        for answer, lo, hi in answers:
            groups: dict[int, list[msgspec.Raw]] = {}
            for raw, row in zip(answer.rows, decode_rows(answer.rows), strict=True):
                second = parser(row.date) if isinstance(row, Record) else None
                if second is None or second < first:
                    window = first
                elif second >= end:
                    window = last_window
                else:
                    window = second - second % self.interval
                groups.setdefault(window, []).append(raw)
            for window, rows in groups.items():
                part = Answer(code=answer.code, msg=answer.msg, error=answer.error, rows=rows)
                out.setdefault(window, []).append((part, lo, hi))
        return out

    def _lines(self, name: str, tally: Tally, t: int) -> Iterator[tuple[str, str, str]]:
        """(family, series, sample line at time t) for every sample the live exporter would
        show of the families a backfill writes."""
        extra = self.request.labels
        for family in families.render(
            [Snapshot(name, tally.counts, tally.outcome_names)],
            families.every(self.interval),
            BACKFILLED,
        ):
            for sample in family.samples:
                series = _series(sample.name, {**sample.labels, **extra})
                yield family.name, series, f"{series} {_number(sample.value)} {t}\n"

    def _emit(self, name: str, tally: Tally, window_start: int, t: int) -> None:
        for family, series, line in self._lines(name, tally, t):
            if family not in ("wolkvox_interactions_last_window", "wolkvox_customers_last_window"):
                key = (family, series)
                if key not in self._seen_series:
                    # A counter starts at 0 at the start of the window it first counts in, so
                    # increase() over the backfilled range includes that first window.
                    self._seen_series.add(key)
                    self.spool.write(family, f"{series} 0 {window_start}\n")
                    self.summary.samples += 1
            self.spool.write(family, line)
            self.summary.samples += 1

    # -- progress file --------------------------------------------------------------------

    def _load_progress(self) -> _Progress | None:
        try:
            data = self.progress_path.read_bytes()
        except FileNotFoundError:
            return None
        if data.startswith(b"{"):
            raise BackfillError(
                f"{self.progress_path} was written by an earlier release; finish that backfill "
                f"with it, or delete the file and {self.spool.directory} to start over"
            )
        try:
            progress = msgspec.msgpack.decode(data, type=_Progress)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BackfillError(
                f"{self.progress_path} is damaged ({exc}); delete it and {self.spool.directory} "
                "to start over"
            ) from None
        if progress.version != PROGRESS_VERSION or progress.signature != self.request.signature:
            raise BackfillError(
                f"{self.progress_path} belongs to a backfill with other arguments "
                f"({progress.signature}); run that again to finish it, or delete it and "
                f"{self.spool.directory} to start over"
            )
        self.summary.resumed = True
        self.spool.cut(progress.spool)
        log.info("resuming an interrupted backfill", extra={"progress": str(self.progress_path)})
        return progress

    def _save(self, name: str, cursor: int, done: bool, tally: Tally) -> None:
        """Record a finished chunk: spool sizes, cursor and counts, in one atomic write."""
        progress = self._progress
        sizes = self.spool.flush()
        operations = dict(progress.operations) if progress else {}
        operations[name] = _OpProgress(
            cursor=cursor,
            done=done,
            state=OperationState(cursor=cursor, origin=None, requests={}, tally=tally.export()),
        )
        spool = {**(progress.spool if progress else {}), **sizes}
        self._progress = _Progress(PROGRESS_VERSION, self.request.signature, operations, spool)
        atomic_write(self.progress_path, msgspec.msgpack.encode(self._progress))

    # -- output ---------------------------------------------------------------------------

    def _assemble(self) -> None:
        """Write the OpenMetrics file: each family's HELP/TYPE, its spooled samples, `# EOF`."""
        every = families.every(self.interval)
        tmp = self.request.output.with_name(self.request.output.name + ".tmp")
        with open(tmp, "wb") as out:
            for f in BACKFILLED:
                path = self.spool.path(f.name)
                if not path.exists() or not path.stat().st_size:
                    continue
                out.write(f"# HELP {f.name} {_escape(f.help.format(every=every))}\n".encode())
                out.write(f"# TYPE {f.name} {f.kind}\n".encode())
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out)
            out.write(b"# EOF\n")
        tmp.replace(self.request.output)
        self.progress_path.unlink(missing_ok=True)
        shutil.rmtree(self.spool.directory, ignore_errors=True)


def write_state(
    config: Config, tallies: dict[str, Tally], ranges: dict[str, tuple[int, int]]
) -> None:
    """Start the live exporter's counters from the backfilled totals, at the backfill's end.

    Refused for an operation the state file already has: its live counters and the backfilled
    ones would overlap or leave a gap, and either would be a lie.
    """
    if config.state.path is None:
        raise BackfillError("--write-state needs state.path in the config")
    store = StateStore(config.state.path)
    existing = store.load()
    taken = sorted(set(existing) & set(tallies))
    if taken:
        raise BackfillError(
            f"the state file {config.state.path} already counts {', '.join(taken)}; "
            "--write-state only starts operations the live exporter has not counted yet"
        )
    for name, tally in tallies.items():
        start, end = ranges[name]
        store.save(
            name, OperationState(cursor=end, origin=start, requests={}, tally=tally.export())
        )


def check_labels(pairs: list[str]) -> dict[str, str]:
    """`--label NAME=VALUE` pairs, e.g. job and instance to match the live scrape's series."""
    reserved = {"operation", "channel", "rp_id", "routing_answer", "outcome", "__name__"}
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise BackfillError(f"--label {pair!r}: expected NAME=VALUE with a valid label name")
        if name in reserved:
            raise BackfillError(f"--label {name}: the exporter sets this label itself")
        out[name] = value
    return out
