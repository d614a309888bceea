"""SIGINT and SIGTERM (Ctrl-C, a cluster's preemption) ask a run to stop after the batch in progress."""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("noderun")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Records the first stop signal; a second one interrupts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second stop signal {signum}")
        self.signum = signum
        log.warning(f"signal {signal.Signals(signum).name}: stopping after the current batch "
                    "(checkpoint and summary are written); send it again to stop at once")

    @contextmanager
    def listening(self) -> Iterator[StopRequest]:
        """Handle the stop signals inside the block (only the main thread can; elsewhere this does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
