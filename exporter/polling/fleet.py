"""The pollers of the running configuration, one per operation, changed by a reload.

A reload starts the operations it adds (from their saved state, if the state database has
them), retires the ones it removes (after their request in flight; their saved state stays for
a later return) and replaces the ones whose settings or token changed, continuing their counters
and cursor. A replaced or removed poller has finished its last request before anything else
uses the process's one token gate for it: the API never sees a token twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from exporter.api.client import TokenGate
from exporter.polling.poller import Poller
from exporter.settings.config import OperationSettings
from exporter.state.store import OperationState, StateStore

log = logging.getLogger(__name__)


@dataclass
class Change:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


class Fleet:
    """Iterating gives the pollers of one moment, whatever a reload does meanwhile."""

    def __init__(self, gate: TokenGate, store: StateStore | None) -> None:
        self.gate = gate
        self.store = store
        self._pollers: tuple[Poller, ...] = ()

    def __iter__(self) -> Iterator[Poller]:
        return iter(self._pollers)

    def __len__(self) -> int:
        return len(self._pollers)

    def restore(self, operations: Sequence[OperationSettings]) -> None:
        """The pollers of `operations`, each resumed from its saved state: made before the
        server answers, so that no scrape sees the operations missing or their counters at 0."""
        saved = self.store.load() if self.store is not None else {}
        self._pollers = tuple(self._poller(s, saved.get(s.name)) for s in operations)

    def start(self) -> None:
        for p in self._pollers:
            p.worker.start()

    def apply(self, operations: Sequence[OperationSettings], tokens: dict[str, str]) -> Change:
        """Make the running pollers those of `operations`, whose tokens (read from their token
        files) are `tokens`; the caller serialises reloads."""
        current = {p.name: p for p in self._pollers}
        wanted = {s.name: s for s in operations}
        change = Change(
            added=[n for n in wanted if n not in current],
            removed=[n for n in current if n not in wanted],
            changed=[
                n
                for n, p in current.items()
                if n in wanted and (p.settings != wanted[n] or p.client.token != tokens[n])
            ],
        )
        leaving = [current[n] for n in change.removed + change.changed]
        self._retire(leaving)
        if self.store is not None:
            for name in change.removed:
                self.store.release(name)
        saved = self.store.load() if self.store is not None and change.added else {}
        fresh = {n: self._poller(wanted[n], saved.get(n)) for n in change.added}
        # A changed operation continues from what its predecessor counted, cursor included.
        fresh |= {n: self._poller(wanted[n], current[n].export_state()) for n in change.changed}
        self._pollers = tuple(fresh.get(n) or current[n] for n in wanted)
        for p in fresh.values():
            p.worker.start()
        return change

    def _poller(self, settings: OperationSettings, saved: OperationState | None) -> Poller:
        return Poller(settings, self.gate, store=self.store, saved=saved)

    def _retire(self, leaving: Sequence[Poller]) -> None:
        """Let each finish its request in flight (no retry, no new request), all at once, then
        save each. One that has not ended within its timeout is abandoned, its token rested."""
        for p in leaving:
            p.worker.retire()
        for p in leaving:
            polling = p.settings.polling
            if not p.retired(polling.timeout + 5):
                log.warning(
                    "a retired poller did not end; abandoning its request",
                    extra={"operation": p.name},
                )
                p.shutdown(0.0)
                self.gate.rest(p.client.token, 2 * polling.timeout)
            p.save()

    def shutdown(self) -> None:
        """Stop every poller at once (requests in flight are abandoned), then save each."""
        for p in self._pollers:
            p.worker.stop.set()
        for p in self._pollers:
            p.shutdown()
            p.save()
        if self.store is not None:
            self.store.close()
