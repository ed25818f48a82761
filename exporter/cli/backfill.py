"""`backfill`: write a past range as OpenMetrics for promtool, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter import logs
from exporter.cli.arguments import (
    Subparsers,
    fail,
)
from exporter.settings import config, durations
from exporter.state.store import StateStore
from exporter.tools.backfill import replay
from exporter.tools.backfill import request as backfill


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "backfill",
        description="Read a past date range from the API and write it as OpenMetrics text for "
        "`promtool tsdb create-blocks-from openmetrics`. Interrupted, the same command resumes.",
    )
    p.add_argument("--config", "--config.file", dest="config", required=True, metavar="FILE")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="DATE",
        help="first instant, inclusive: YYYY-mm-dd or YYYY-mm-ddTHH:MM:SS, wall time of each "
        "operation's timezone",
    )
    p.add_argument(
        "--to", dest="end", required=True, metavar="DATE", help="last instant, exclusive"
    )
    p.add_argument("--output", required=True, metavar="FILE", help="OpenMetrics file to write")
    p.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="NAME",
        help="backfill only this operation (repeatable; default all)",
    )
    p.add_argument(
        "--chunk",
        default="1h",
        metavar="DURATION",
        help="range per API call (default 1h); fewer calls spend less daily quota, and a chunk "
        "over the record cap is split like live polls",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add a label to every sample, e.g. job=wolkvox and instance=HOST:9856 so backfilled "
        "series continue the scraped ones (repeatable)",
    )
    p.add_argument(
        "--write-state",
        action="store_true",
        help="start the live exporter's counters (state.path) from the backfilled totals at --to",
    )
    p.set_defaults(command=command)


def command(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
        logs.setup("info", "logfmt", secrets=[op.secret() for op in cfg.operations])
        chunk = durations.parse_duration(args.chunk)
        interval = int(cfg.polling.interval)
        if chunk < interval or chunk % interval:
            raise backfill.BackfillError(
                f"--chunk must be a whole number of polling intervals ({interval}s)"
            )
        names = {op.name for op in cfg.operations}
        unknown = sorted(set(args.operation) - names)
        if unknown:
            raise backfill.BackfillError(f"--operation: no operation named {', '.join(unknown)}")
        ops = [s for s in cfg.per_operation() if not args.operation or s.name in args.operation]
        # Customers are remembered by a keyed digest: with the state database's key, so that
        # --write-state hands them over (without a state, the backfill keeps one of its own).
        key = None if cfg.state.path is None else StateStore(cfg.state.path).secret()
        request = backfill.Request(
            config=cfg,
            start_text=args.start,
            end_text=args.end,
            output=Path(args.output),
            operations=ops,
            chunk=int(chunk),
            labels=backfill.check_labels(args.label),
            secret=key,
        )
        summary = replay.Backfill(request).run()
        if args.write_state:
            replay.write_state(cfg, summary.tallies, summary.ranges)
    except (config.ConfigError, backfill.BackfillError, ValueError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or args.output}: {exc.strerror}; run again to resume")
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    counted = sum(sum(t.counts.interactions.values()) for t in summary.tallies.values())
    print(
        f"wrote {args.output}: {summary.windows} windows, {counted} interactions, "
        f"{summary.samples} samples, {summary.requests} API calls"
        + (" (resumed)" if summary.resumed else "")
    )
    print(f"next: promtool tsdb create-blocks-from openmetrics {args.output} <prometheus data dir>")
    return 0
