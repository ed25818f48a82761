"""Turning record fields into bounded, privacy-safe label values.

`routing_answer` is free text written by the bot flow, so left alone it would mint a series per
reply and could carry what a customer typed. It is therefore normalised (whitespace collapsed,
`MaskedText:` payloads dropped, long digit runs and e-mail addresses masked, cut to a length) and
each label is capped per operation: the first `max_values` distinct values keep their name, later
ones are folded into `__other__` and the fold is counted so the cap is visible, not silent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import product
from typing import Any

from exporter.settings.config import Kpis, Labels

LIMITED_LABELS = ("channel", "rp_id", "routing_answer")
LabelKey = tuple[str, str, str]  # channel, rp_id, routing_answer
# The raw field values of a group of records and the start of the window they count in.
RawGroup = tuple[str, str | int, str | None, int]
# What a raw label set counts as: its label set, the labels folded into __other__, its outcome.
Labelled = tuple[LabelKey, tuple[str, ...], str]


OTHER = "__other__"
EMPTY = "__empty__"

_SPACE = re.compile(r"\s+")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
_DIGITS = re.compile(r"\d{4,}")
_MASKED = re.compile(r"^\s*maskedtext\s*:", re.IGNORECASE)


MAX_ID_LENGTH = 64


def _clean(value: str, max_length: int) -> str:
    v = _SPACE.sub(" ", value).strip()
    v = "".join(ch for ch in v if ch.isprintable())
    if len(v) > max_length:
        v = v[: max_length - 1].rstrip() + "…"
    return v


def channel(value: str) -> str:
    return _clean(value, MAX_ID_LENGTH).lower() or EMPTY


def rp_id(value: str | int) -> str:
    return _clean(str(value), MAX_ID_LENGTH) or EMPTY


def routing_answer(value: str | None, max_length: int) -> str:
    if not value:
        return EMPTY
    if _MASKED.match(value):  # common, and each payload differs: settle it before other work
        return "MaskedText"
    # Bound the text before any regex sees it: the answer is free text of any size, and the
    # e-mail pattern backtracks quadratically over a long run without an '@'.
    v = _SPACE.sub(" ", value[: 4 * max_length]).strip()
    if not v:
        return EMPTY
    if _MASKED.match(v):
        return "MaskedText"
    if "@" in v:
        v = _EMAIL.sub("<email>", v)
    v = _DIGITS.sub("#", v)
    return _clean(v, max_length) or EMPTY


class Limiter:
    """Admit at most `max_values` distinct values of one label; fold the rest into `__other__`."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self.admitted: set[str] = set()

    def __call__(self, value: str) -> tuple[str, bool]:
        """Return the label value to use and whether it was folded."""
        if value in self.admitted:
            return value, False
        if len(self.admitted) < self.max_values:
            self.admitted.add(value)
            return value, False
        return OTHER, True


class Outcomes:
    """Classify a routing answer as it was sent (before normalisation) by the first rule that
    matches, so operators write rules against the text Wolkvox shows them."""

    def __init__(self, rules: list[tuple[str, str]], default: str) -> None:
        self.rules = [(name, re.compile(pattern)) for name, pattern in rules]
        self.default = default

    def __call__(self, answer: str | None) -> str:
        # Bounded like the label: user regexes may backtrack on long text.
        text = (answer or "")[:1024]
        for name, pattern in self.rules:
            if pattern.search(text):
                return name
        return self.default

    @property
    def names(self) -> list[str]:
        """Every outcome a rule can produce, so each is exposed (at 0) from the start."""
        return list(dict.fromkeys([*(n for n, _ in self.rules), self.default]))


# Which labels were folded into __other__, for each combination of the three limiters' answers.
_FOLDED = {
    flags: tuple(name for name, was in zip(LIMITED_LABELS, flags, strict=True) if was)
    for flags in product((False, True), repeat=3)
}


class Labeler:
    """One operation's label values for raw field values: normalised, capped per label and per
    operation, and classified into an outcome.

    Each field is normalised once per distinct raw value: a full answer has thousands of
    distinct (channel, rp_id, answer) triples but only a handful of channels and rp_ids. The
    memos are cleared, not grown, past 10,000 entries; the limiters keep their state.
    """

    def __init__(self, config: Labels, kpis: Kpis) -> None:
        self.config = config
        self.classify = Outcomes(
            [(r.outcome, r.match) for r in kpis.outcomes], kpis.default_outcome
        )
        self._limit_channel = Limiter(config.channel.max_values)
        self._limit_rp = Limiter(config.rp_id.max_values)
        self._limit_answer = Limiter(config.routing_answer.max_values)
        self._channels: dict[str, tuple[str, bool]] = {}
        self._rps: dict[str | int, tuple[str, bool]] = {}
        self._answers: dict[str | None, tuple[str, bool, str]] = {}
        self._sets: dict[tuple[str, str | int, str | None], Labelled] = {}

    def admit(self, key: LabelKey) -> None:
        """Take a label set counted before a restart as admitted, so its values keep their name."""
        for limiter, value in zip(
            (self._limit_channel, self._limit_rp, self._limit_answer), key, strict=True
        ):
            if value != OTHER:
                limiter.admitted.add(value)

    def group(self, group: RawGroup, known: Mapping[LabelKey, int]) -> Labelled:
        """The label set of a group of records, its folded labels and its outcome. Past
        `max_series` label sets in `known`, a new one folds its routing answer, then its rp_id,
        into __other__ (the series per operation stay under the cap plus one per channel, and
        the counts stay exact in total)."""
        raw = (group[0], group[1], group[2])
        hit = self._sets.get(raw)
        if hit is not None:
            return hit
        ch, f1 = self.channel_label(raw[0])
        rp, f2 = self._rp_label(raw[1])
        ans, f3, outcome = self._answer_label(raw[2])
        if (ch, rp, ans) not in known and len(known) >= self.config.max_series:
            if ans != OTHER:
                ans, f3 = OTHER, True
            if (ch, rp, ans) not in known and rp != OTHER:
                rp, f2 = OTHER, True
        hit = ((ch, rp, ans), _FOLDED[(f1, f2, f3)], outcome)
        _store(self._sets, raw, hit)
        return hit

    def outcome(self, raw: str | None) -> str:
        """The outcome of a raw routing answer, as `group` gives it."""
        return self._answer_label(raw)[2]

    def channel(self, raw: str) -> str:
        """The channel's label value, as `group` gives it (the limiter admits each value once)."""
        return self.channel_label(raw)[0]

    def channel_label(self, raw: str) -> tuple[str, bool]:
        hit = self._channels.get(raw)
        if hit is None:
            hit = self._limit_channel(channel(raw))
            _store(self._channels, raw, hit)
        return hit

    def _rp_label(self, raw: str | int) -> tuple[str, bool]:
        hit = self._rps.get(raw)
        if hit is None:
            hit = self._limit_rp(rp_id(raw))
            _store(self._rps, raw, hit)
        return hit

    def _answer_label(self, raw: str | None) -> tuple[str, bool, str]:
        hit = self._answers.get(raw)
        if hit is None:
            ans, folded = self._limit_answer(
                routing_answer(raw, self.config.routing_answer.max_length)
            )
            hit = (ans, folded, self.classify(raw))
            _store(self._answers, raw, hit)
        return hit


def _store(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Add to a memo, clearing it first when full: bounded memory, and the hot values return
    at once."""
    if len(cache) >= 10_000:
        cache.clear()
    cache[key] = value
