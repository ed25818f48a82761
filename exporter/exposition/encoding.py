"""Every byte of the exposition formats is written here: Prometheus text, OpenMetrics (live, and
backfill's with timestamps) and gzip.

prometheus_client's encoders write the names, labels, escaping and numbers; this module cuts
their output into the pieces the exporter reuses (a family's header, a series' line up to its
value) and puts pages together. Nothing else in the package knows how a line is escaped or where
`# EOF` goes, so a change of format is one module's change.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Protocol, cast

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_EOF = b"# EOF\n"
# How both encoders write a sample's value (prometheus_client ships it without annotations).
number = cast(Callable[[float], str], floatToGoString)


class Source(Protocol):
    """What prometheus_client's encoders read: a registry, or anything that collects."""

    def collect(self) -> Iterable[Metric]: ...


Encoder = Callable[[Source], bytes]  # prometheus_client's generate_latest, text or OpenMetrics


class Fixed:
    """Metrics to encode, as a registry would hand them to an encoder."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def negotiate(accept: str) -> tuple[Encoder, str, bool]:
    """The encoder and content type for a scrape's Accept header, and whether it is OpenMetrics."""
    encoder, content_type = choose_encoder(accept)
    return encoder, content_type, content_type.startswith("application/openmetrics-text")


def split(text: bytes) -> tuple[bytes, bytes]:
    """One family's exposition as (its # HELP/# TYPE lines, its samples), end marker dropped."""
    text = text.removesuffix(_EOF)
    at = 0
    while text.startswith(b"#", at):
        at = text.index(b"\n", at) + 1
    return text[:at], text[at:]


def header(encoder: Encoder, metric: Metric) -> bytes:
    """A family's # HELP and # TYPE lines as `encoder` writes them."""
    return split(encoder(Fixed([metric])))[0]


def samples(encoder: Encoder, metrics: Sequence[Metric]) -> bytes:
    """The sample lines of `metrics`, without headers or end marker."""
    return b"".join(split(encoder(Fixed([m])))[1] for m in metrics)


def line_prefix(encoder: Encoder, metric: Metric) -> bytes:
    """A one-sample metric's line up to its value (name and labels, escaped), so a series'
    line can be written again with another value without encoding its labels again."""
    line = split(encoder(Fixed([metric])))[1]
    return line[: line.rindex(b" ") + 1]


def line(prefix: bytes, value: float) -> bytes:
    """A series' sample line from its prefix (`line_prefix`) and a value, as the encoders
    write it. Nearly every value is a count, an int: below a million it is written as Go writes
    its float (`12.0`) by one C-level format, where the encoders' number formatting costs a
    third of re-encoding a page after a commit (most of its lines change at each poll)."""
    if type(value) is int and -1_000_000 < value < 1_000_000:
        return b"%s%d.0\n" % (prefix, value)
    return prefix + number(value).encode() + b"\n"


def cached_part(body: bytes, openmetrics: bool) -> bytes:
    """What a page rendered once per commit keeps: everything but the end marker, which comes
    after the part rendered at each scrape."""
    return body.removesuffix(_EOF) if openmetrics else body


def scraped_part(live: Source | None, encoder: Encoder, openmetrics: bool) -> bytes:
    """The part of a page rendered at each scrape, with the end marker an OpenMetrics page needs."""
    if live is not None:
        return encoder(live)
    return _EOF if openmetrics else b""


def compress(body: bytes) -> bytes:
    """One gzip member. Pages are sent as two members (cached, then per scrape): decoders read
    concatenated members as one stream, so the cached one is compressed once per commit."""
    return gzip.compress(body, compresslevel=1)


class TimestampedLines:
    """OpenMetrics sample lines with timestamps, for backfill: each series' prefix (name and
    labels, escaped by prometheus_client's OpenMetrics encoder) is encoded once and reused."""

    def __init__(self, extra_labels: dict[str, str]) -> None:
        self.extra = extra_labels
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def series(self, metric: Metric, sample: Sample) -> bytes:
        """The line of `sample` up to its value; also the series' identity."""
        labels = {**sample.labels, **self.extra}
        key = (sample.name, tuple(labels.items()))
        prefix = self._prefixes.get(key)
        if prefix is None:
            one = Metric(metric.name, metric.documentation, metric.type)
            one.samples = [Sample(sample.name, labels, 0.0)]
            prefix = self._prefixes[key] = line_prefix(openmetrics_latest, one)
        return prefix

    @staticmethod
    def line(prefix: bytes, value: float, timestamp: int) -> bytes:
        return prefix + f"{_om_number(value)} {timestamp}\n".encode()


def _om_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def write_openmetrics(out: IO[bytes], parts: Iterable[tuple[Metric, Path]]) -> None:
    """An OpenMetrics file: for each family its header, then its sample lines from a file, and
    the end marker."""
    for metric, path in parts:
        out.write(header(openmetrics_latest, metric))
        with open(path, "rb") as src:
            shutil.copyfileobj(src, out)
    out.write(_EOF)
