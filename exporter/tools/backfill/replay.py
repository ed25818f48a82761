"""Replay a past range through the live exporter's own parts and sample it window by window.

Each chunk of the range is fetched with the shared ingest step (client, cap splitting, Tally), so
a backfilled series has the live series' name, labels and values. Chunks are as large as the
record cap allows (each call costs daily quota); their rows are then counted window by window and,
after each polling window, the counters and window gauges are sampled, stamped with the window's
end, exactly as a live exporter would have shown them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import msgspec
from prometheus_client.core import Metric

from exporter.api.client import ApiError, Client, Outcome, TokenGate
from exporter.api.records import Answer, DateParser, Record, decode_rows
from exporter.counting.tally import Tally
from exporter.exposition import encoding, families
from exporter.polling.ingest import Ingest
from exporter.polling.snapshot import Snapshot
from exporter.settings.config import Config, OperationSettings
from exporter.state import secret
from exporter.state.store import OperationState, StateStore
from exporter.tools.backfill.progress import OperationProgress, Progress, ProgressFile, Spool
from exporter.tools.backfill.request import BackfillError, Request

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
        "wolkvox_sessions_ended",
        "wolkvox_sessions_open",
        "wolkvox_session_turns",
        "wolkvox_session_duration_seconds",
        "wolkvox_session_time_to_transfer_seconds",
        "wolkvox_sessions_recontact",
        "wolkvox_sessions_with_fallback",
        "wolkvox_sessions_expired",
        "wolkvox_session_rows_after_end",
    )
)
GAUGES = {f.name for f in BACKFILLED if f.kind == "gauge"}

Ranged = tuple[Answer, int, int]  # an answer and the inclusive range that returned it


@dataclass
class Summary:
    windows: int = 0
    records: int = 0
    requests: int = 0
    samples: int = 0
    resumed: bool = False
    tallies: dict[str, Tally] = field(default_factory=dict)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # [start, end) per operation


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
        self.interval = request.interval
        self.gate = gate or TokenGate(self.config.polling.request_spacing)
        self.now = now
        self.stream = stream
        output = request.output
        self.spool = Spool(output.with_name(output.name + ".parts"), [f.name for f in BACKFILLED])
        self.progress = ProgressFile(
            output.with_name(output.name + ".progress"), request.signature, self.spool
        )
        self.summary = Summary()
        self.key_file = output.with_name(output.name + ".key")
        self.secret = request.secret or secret.load_or_create(self.key_file)
        self.lines = encoding.TimestampedLines(request.labels)
        self._seen_series: set[tuple[str, bytes]] = set()  # counter series already started at 0

    def run(self) -> Summary:
        ranges = self.summary.ranges = self.request.ranges(self.now)
        self.summary.resumed = self.progress.load()
        if not self.summary.resumed and self.request.output.exists():
            raise BackfillError(
                f"{self.request.output} exists; remove it or choose another --output"
            )
        total = sum((end - start) // self.interval for start, end in ranges.values())
        bar = Progress(total, self.stream)
        try:
            for settings in self.request.operations:
                start, end = ranges[settings.name]
                saved = self.progress.operation(settings.name)
                if saved is not None and saved.done:
                    bar.advance((end - start) // self.interval, 0, skipped=True)
                    self.summary.tallies[settings.name] = _tally(settings, saved.state, self.secret)
                    continue
                self._operation(settings, start, end, saved, bar)
        finally:
            bar.close()
            self.spool.close()
        self._assemble()
        return self.summary

    def _operation(
        self,
        settings: OperationSettings,
        start: int,
        end: int,
        saved: OperationProgress | None,
        bar: Progress,
    ) -> None:
        tally = _tally(settings, saved.state if saved else None, self.secret)
        self.summary.tallies[settings.name] = tally
        cursor = saved.cursor if saved else start
        if cursor > start:
            bar.advance((cursor - start) // self.interval, 0, skipped=True)
            # Counter series that have samples already must not get another starting 0.
            for family, series, _value in self._samples(settings.name, tally):
                self._seen_series.add((family, series))
        client = Client.for_operation(settings, self.gate, self._observe)
        ingest = Ingest(settings, tally, client)
        try:
            while cursor < end:
                chunk_end = min(cursor + self.request.chunk, end)
                records = self._chunk(ingest, start, cursor, chunk_end)
                windows = (chunk_end - cursor) // self.interval
                self.summary.windows += windows
                self.summary.records += records
                bar.advance(windows, records)
                cursor = chunk_end
                state = OperationState(
                    cursor=cursor, origin=None, requests={}, tally=tally.export()
                )
                self.progress.save(settings.name, OperationProgress(cursor, cursor >= end, state))
        finally:
            client.close()

    def _chunk(self, ingest: Ingest, start: int, first: int, end: int) -> int:
        """Fetch `[first, end)` and replay it window by window; return the rows received."""
        answers: list[Ranged] = []
        try:
            ingest.fetch(first, end - 1, lambda answer, lo, hi: answers.append((answer, lo, hi)))
        except ApiError as exc:
            name = ingest.name
            if exc.outcome is Outcome.QUOTA_EXCEEDED:
                raise BackfillError(
                    f"operation {name}: the daily API quota is used up; run the same "
                    "command again after the operation's local midnight to resume"
                ) from None
            raise BackfillError(
                f"operation {name}: {exc}; run the same command again to resume"
            ) from None
        # The Tally's own parser: the dates it caches here are the ones ingest looks up.
        by_window = self._by_window(answers, ingest.tally.parse_date, first, end)
        for w in range(first, end, self.interval):
            for rows, lo, hi in by_window.get(w, []):
                ingest.count(rows, lo, hi, (w, w))
            t = w + self.interval
            ingest.publish(w, float(t))
            ingest.forget(t, start)
            self._emit(ingest.name, ingest.tally, w, t)
        ingest.tally.saved()  # progress is saved whole: the changes noted for a live save go
        return sum(a.size for a, _, _ in answers)

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        self.summary.requests += 1

    def _by_window(
        self, answers: list[Ranged], parser: DateParser, first: int, end: int
    ) -> dict[int, list[Ranged]]:
        """Each answer's rows by the window of their date, as one answer per (answer, window),
        with the range that returned them. Samples are written in time order, so rows dated
        before the chunk count in its first window and rows dated after it in its last, as a
        live poll counts them; rows that cannot be dated go to the first window, where the
        Tally rejects them. Answers are kept apart because cap-split halves share a second the
        Tally must dedupe."""
        out: dict[int, list[Ranged]] = {}
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

    def _samples(self, name: str, tally: Tally) -> Iterator[tuple[str, bytes, float]]:
        """(family, series prefix, value) for every sample the live exporter would show of the
        families a backfill writes."""
        for family in families.render(
            [Snapshot(name, tally.counts, tally.outcome_names)],
            families.every(self.interval),
            BACKFILLED,
        ):
            for sample in family.samples:
                yield family.name, self.lines.series(family, sample), sample.value

    def _emit(self, name: str, tally: Tally, window_start: int, t: int) -> None:
        for family, series, value in self._samples(name, tally):
            if family not in GAUGES:
                key = (family, series)
                if key not in self._seen_series:
                    # A counter starts at 0 at the start of the window it first counts in, so
                    # increase() over the backfilled range includes that first window.
                    self._seen_series.add(key)
                    self.spool.write(family, self.lines.line(series, 0, window_start))
                    self.summary.samples += 1
            self.spool.write(family, self.lines.line(series, value, t))
            self.summary.samples += 1

    def _assemble(self) -> None:
        """Write the OpenMetrics file from the spools, each family in one block."""
        every = families.every(self.interval)
        empty: dict[str, Metric] = {m.name: m for m in families.render([], every, BACKFILLED)}
        parts = [
            (empty[f.name], self.spool.path(f.name))
            for f in BACKFILLED
            if self.spool.path(f.name).exists() and self.spool.path(f.name).stat().st_size
        ]
        tmp = self.request.output.with_name(self.request.output.name + ".tmp")
        with open(tmp, "wb") as out:
            encoding.write_openmetrics(out, parts)
        tmp.replace(self.request.output)
        self.progress.remove()
        shutil.rmtree(self.spool.directory, ignore_errors=True)
        self.key_file.unlink(missing_ok=True)


def _tally(
    settings: OperationSettings, state: OperationState | None, secret: bytes | None
) -> Tally:
    tally = Tally(settings, secret)
    if state is not None:
        tally.restore(state.tally)
    return tally


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
