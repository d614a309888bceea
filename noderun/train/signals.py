"""SIGINT and SIGTERM (Ctrl-C, a cluster's preemption) ask a run to stop after the batch in progress.

A cluster's warning signal SIGUSR2 (what submitit asks Slurm to send before a job's time limit or on
preemption) is taken too when a handler is already installed for it: the run saves its checkpoint
after the batch in progress, then hands the signal to that handler (submitit requeues the job). A
SIGTERM that already has a Python handler (submitit's, which lets the job outlive Slurm's SIGTERM and
requeue on SIGUSR2) is left to it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("noderun")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HANDOFF_SIGNALS = (signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ()
REPEAT_WINDOW_S = 1.0


class StopRequest:
    """Records the first stop signal; a second one interrupts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received = 0.0
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            if signum == self.signum and time.monotonic() - self.received < REPEAT_WINDOW_S:
                return  # the same signal relayed again (torchrun passes the terminal's Ctrl-C on to its workers)
            raise KeyboardInterrupt(f"second stop signal {signum}")
        self.signum, self.received = signum, time.monotonic()
        log.warning(
            f"signal {signal.Signals(signum).name}: stopping after the current batch "
            "(checkpoint and summary are written); send it again to stop at once"
        )

    @contextmanager
    def listening(self) -> Iterator[StopRequest]:
        """Handle the signals inside the block (only the main thread can; elsewhere this does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        taken = tuple(s for s in STOP_SIGNALS if not callable(signal.getsignal(s)) or s == signal.SIGINT)
        taken += tuple(s for s in HANDOFF_SIGNALS if callable(signal.getsignal(s)))
        self.previous = {signum: signal.signal(signum, self._handle) for signum in taken}
        try:
            yield self
        finally:
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)

    def hand_off(self) -> None:
        """Once the checkpoint is written: give a warning signal to the handler it was taken from (with every
        handler put back first, as that one may requeue the job and exit)."""
        assert self.signum is not None  # called only once a stop signal arrived
        handler = self.previous.get(self.signum)
        if self.signum in HANDOFF_SIGNALS and callable(handler):
            for signum, previous in self.previous.items():
                signal.signal(signum, previous)
            handler(self.signum, None)
