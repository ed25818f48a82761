"""Waiting for the signals a long-running command answers: SIGTERM and SIGINT stop it, SIGHUP
re-reads its configuration."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("exporter")


def wait_for_signal(hangup: Callable[[], object] | None = None) -> None:
    """Until SIGTERM or SIGINT. SIGHUP calls `hangup` (the exporter re-reads its config and
    web config) instead of killing the process as it would by default; without one, it is
    logged and ignored."""
    wake = threading.Event()  # set by every handler; waited on without a timeout, so an idle
    done = threading.Event()  # exporter does not wake twice a second for nothing
    hangups = threading.Event()

    def handler(event: threading.Event) -> Callable[..., None]:
        def handle(*_: object) -> None:
            event.set()
            wake.set()

        return handle

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler(done))
    signal.signal(signal.SIGHUP, handler(hangups))
    while not done.is_set():
        wake.wait()
        wake.clear()
        if hangups.is_set():
            hangups.clear()
            if hangup is None:
                log.info("SIGHUP: nothing to re-read")
            else:
                hangup()
