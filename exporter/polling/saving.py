"""An operation's saves: its whole tally after a poll that counted, only where the poller
stands after one that did not.

A quiet operation polls every interval and finds nothing; re-encoding and rewriting its
counters, fingerprints and label sets each time would cost what a busy poll costs. The tally's
revision tells whether anything it counts changed since the last save.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.counting.counts import TallyState
from exporter.counting.seen import Changes
from exporter.counting.tally import Tally
from exporter.state.store import OperationState, StateStore

# The poller's state with its tally's export (sessions left out), or with the tally given.
Export = Callable[[TallyState | None], OperationState]


class Saver:
    """Saves one operation into the state store; without a store, only drops the changes the
    tally notes for saves, which would otherwise grow."""

    def __init__(
        self,
        name: str,
        store: StateStore | None,
        tally: Tally,
        lock: threading.Lock,
        export: Export,
    ) -> None:
        self.name = name
        self.store = store
        self.tally = tally
        self.lock = lock  # the poller's, around the tally
        self.export = export
        self._saved: TallyState | None = None  # the tally as last saved whole
        self._revision = -1  # its revision then; -1 after a failed save

    def whole(self) -> bool:
        """Write the counters and the session changes since the last save; the changes stay
        noted until a save succeeds. Only the poller's thread counts into the tally, so
        nothing changes between taking the state, taking the changes and marking them saved.
        Returns whether it was saved."""
        if self.store is None:
            with self.lock:
                self.tally.saved()
            return True
        state = self.export(None)
        with self.lock:
            changes = self.tally.pending()
        if not self.store.save(self.name, state, changes):
            return False
        self._saved = state.tally
        with self.lock:
            self.tally.saved()
        return True

    def changed(self) -> bool:
        """Save what a commit must; return whether the counts changed since the last commit.

        Unchanged, the tally last saved is saved again with where the poller stands now
        (cursor, request counters): the changes noted since (rows forgotten, sessions expired
        from the books) change no count and wait for the next save that counted something.
        Only a tally saved whole may be saved again with a later cursor: after a failed save,
        the next commit saves whole again."""
        with self.lock:
            revision = self.tally.revision
        if revision == self._revision:
            if self.store is not None and self._saved is not None:
                self.store.save(self.name, self.export(self._saved), Changes())
            return False
        saved = self.whole()
        self._revision = revision if saved else -1
        return True
