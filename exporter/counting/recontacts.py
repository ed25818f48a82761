"""Customers of the re-contact window: whose session ended when, with what result.

A customer is remembered by a keyed digest (see state.secret) as one int, `last << 2 | result`
(the last row of their latest ended session, and its result), for `recontact_window` and then
`session_horizon` after it: a session that began within the window may end up to a horizon
later (and, where the API selects rows by close time, arrive well after it began). Expiry is
filed on a wheel of ten-minute buckets, so forgetting touches the customers that may be due,
not every one.
"""

from __future__ import annotations

from exporter.counting.wheel import Wheel

_WHEEL = 600


class Recontacts:
    def __init__(self, window: int, horizon: int) -> None:
        self.window = window
        self.keep = window + horizon
        self.customers: dict[int, int] = {}  # keyed digest -> last << 2 | result
        self._expiring = Wheel(_WHEEL)  # customer digests by when they may be forgotten
        self._changed: set[int] = set()
        self._floor: int | None = None

    def __len__(self) -> int:
        return len(self.customers)

    def ended(self, customer: int, first: int, last: int, result: int) -> int | None:
        """A session of `customer` from `first` to `last` ended with `result`: return the
        result of their previous session if it ended at most the window before `first`."""
        earlier = self.customers.get(customer)
        previous = None
        if earlier is not None:
            before = earlier >> 2
            if before <= first and first - before <= self.window:
                previous = earlier & 3
            if before > last:
                return previous  # a later session of theirs ended first: it stays the latest
        self.customers[customer] = last << 2 | result
        self._changed.add(customer)
        if earlier is None:
            # A returning customer stays filed where it was, which falls due first; it is
            # filed again there (`forget_before`). Filing it at every session would hold an
            # entry per session of the window and a horizon, not one per customer.
            self._expiring.file(customer, last + self.keep)
        return previous

    def forget_before(self, second: int) -> None:
        """Forget customers whose latest session ended longer than the window and a horizon
        before `second`, everything before which has been collected."""
        floor = second - self.keep
        self._floor = floor
        for filed in self._expiring.before(second - _WHEEL + 1):  # buckets ended by `second`
            for who in filed:
                value = self.customers.get(who)
                if value is None:
                    continue
                if value >> 2 < floor:
                    del self.customers[who]
                    self._changed.discard(who)
                else:  # a later session moved it on: filed again where it is due (a bucket
                    # not taken out yet, as it ends after `second`)
                    self._expiring.file(who, (value >> 2) + self.keep)

    def pending(self) -> tuple[dict[int, int], int | None]:
        """Since the last `saved()`: the customers changed, and the floor below which every
        customer is forgotten."""
        customers = self.customers
        changed = {k: customers[k] for k in self._changed if k in customers}
        return changed, self._floor

    def saved(self) -> None:
        self._changed.clear()
        self._floor = None

    def load(self, customers: dict[int, int]) -> None:
        for who, value in customers.items():
            self.customers[who] = value
            self._expiring.file(who, (value >> 2) + self.keep)
