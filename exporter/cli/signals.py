"""Waiting for the signals a long-running command answers: SIGTERM and SIGINT stop it, SIGHUP
re-reads its configuration.

The signals are blocked in every thread (`block_signals`, called before any thread starts, so
that each inherits the mask) and taken by `sigwait` in the main thread. A handler instead runs
only when the main thread next runs Python code: the kernel may hand a process's signal to any
thread, and a main thread asleep in a wait without a timeout then sleeps on, a SIGHUP's reload
waiting for the next signal. `sigwait` returns at once, and an idle exporter never wakes.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

log = logging.getLogger("exporter")

HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def block_signals() -> None:
    """Keep SIGTERM, SIGINT and SIGHUP for `wait_for_signal`; call it before starting threads."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def wait_for_signal(hangup: Callable[[], object] | None = None) -> None:
    """Until SIGTERM or SIGINT. SIGHUP calls `hangup` (the exporter re-reads its config and
    web config) instead of killing the process as it would by default; without one, it is
    logged and ignored."""
    block_signals()  # this thread's own mask, in case the caller has not blocked them yet
    while signal.sigwait(HANDLED) == signal.SIGHUP:
        if hangup is None:
            log.info("SIGHUP: nothing to re-read")
        else:
            hangup()
