"""Turning record fields into bounded, privacy-safe label values.

`routing_answer` is free text written by the bot flow, so left alone it would mint a series per
reply and could carry what a customer typed. It is therefore normalised (whitespace collapsed,
`MaskedText:` payloads dropped, long digit runs and e-mail addresses masked, cut to a length) and
each label is capped per operation: the first `max_values` distinct values keep their name, later
ones are folded into `__other__` and the fold is counted so the cap is visible, not silent.
"""

from __future__ import annotations

import re

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
