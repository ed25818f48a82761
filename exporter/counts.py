"""What a tally counted, as one typed value: what the tally exports, what the state stores and
what a restart restores. Strict mypy checks every field from the tally to the state file.
"""

from __future__ import annotations

import msgspec


class Counts(msgspec.Struct, forbid_unknown_fields=True):
    interactions: list[tuple[str, str, str, int]]  # label set, count
    received: int
    duplicates: int
    rejected: dict[str, int]
    overflow: dict[str, int]
    by_window: dict[int, list[tuple[str, str, str, int]]]
    last_window: list[tuple[str, str, str, int, float]]  # label set, value, last non-zero time
    seen: list[tuple[int, bytes, int]]  # second filed under, fingerprint, copies
    outcomes: list[tuple[str, str, int]] = []  # channel, outcome, count
    sessions_total: dict[str, int] = {}
    transferred_total: dict[str, int] = {}
    # Session digests by the bucket they were first seen in, packed (sessions.pack), and the
    # digests of those transferred. In the database they are rows of their own.
    session_buckets: dict[int, bytes] = {}
    session_transfers: bytes = b""
    customers_last_window: dict[str, int] = {}  # counts only; the customer hashes are not saved
    outside_range: int = 0  # counted rows dated outside the range that returned them
    newest: int | None = None  # the date of the newest row counted
