"""Waiting for the signals a long-running command answers: SIGTERM and SIGINT stop it, SIGHUP
re-reads the web config."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from exporter.exposition import webconfig

log = logging.getLogger("exporter")


def wait_for_signal(security: webconfig.Security | None) -> None:
    """Until SIGTERM or SIGINT. SIGHUP re-reads the web config (certificates rotated by
    cert-manager, say) instead of killing the process as it would by default."""
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
            if security is None:
                log.info("SIGHUP: no --web.config.file to re-read; the config file needs a restart")
            else:
                security.reload("SIGHUP")
