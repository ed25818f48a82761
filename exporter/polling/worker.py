"""The thread of one poller: poll, sleep until the next attempt, until stopped or retired.

Two ways to end. `shutdown` abandons the request in flight: the process is exiting. `retire`
lets it finish and asks no other: a reload removes or replaces the operation, and whatever
replaces it must not use the token while this one still does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        name: str,
        poll: Callable[[], object],
        next_attempt: Callable[[float], float],
        clock: Callable[[], float],
        crashed: Callable[[], None],
    ) -> None:
        self.name = name
        self.poll = poll
        self.next_attempt = next_attempt
        self.clock = clock
        self.crashed = crashed  # a poll raised: mark the operation failed and commit that
        self.stop = threading.Event()  # now: a request in flight is abandoned
        self.retiring = threading.Event()  # after the request in flight
        self.wake = threading.Event()  # set by either: ends waits, and new requests
        self._thread: threading.Thread | None = None

    @property
    def ending(self) -> bool:
        return self.stop.is_set() or self.retiring.is_set()

    def run(self) -> None:
        while not self.ending:
            try:
                self.poll()
            except Exception:  # a bug must not kill the loop and silently freeze the metrics
                log.exception("unexpected error in poll", extra={"operation": self.name})
                self.crashed()
            now = self.clock()
            self.wake.wait(max(0.0, self.next_attempt(now) - now))

    def start(self) -> None:
        """Start the thread, once: a reload that lands while the exporter starts may have
        started this poller already."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self.run, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float) -> None:
        self.stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def retire(self) -> None:
        self.retiring.set()
        self.wake.set()

    def retired(self, timeout: float) -> bool:
        """Whether the thread has ended, waiting up to `timeout` for its last request."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True
