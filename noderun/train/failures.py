"""What a failing batch does to a run: the policy (raise, skip, fallback), its exceptions and records."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from torch import nn

from ..errors import SolverError
from ..models.ode_block import SolverSettings, ode_blocks


class NonFiniteLoss(RuntimeError):
    """The loss or the gradients of a batch are NaN or infinite."""


BATCH_FAILURES = (SolverError, NonFiniteLoss)


def failure_status(error: BaseException) -> str:
    """``diverged`` when the numbers blew up (a non-finite loss, gradient or ODE state), else ``failed``."""
    if isinstance(error, NonFiniteLoss) or (isinstance(error, SolverError) and error.nonfinite):
        return "diverged"
    return "failed"


class StopTraining(RuntimeError):
    """The run stops because of a batch it could not train on; ``status`` is ``failed`` or ``diverged``."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the run saved a checkpoint after its last complete batch."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by signal {signum} after step {step}; continue with resume=<this run's directory>")
        self.signum = signum


@dataclass(frozen=True)
class FailurePolicy:
    """``action``: ``raise`` (stop the run), ``skip`` (drop the batch) or ``fallback`` (retry it once with the
    ``fallback`` solver). More than ``max_bad_batches`` skipped or retried batches stop the run."""

    action: str = "raise"
    fallback: SolverSettings | None = None
    max_bad_batches: int | None = None


@contextmanager
def solver_swapped(model: nn.Module, settings: SolverSettings) -> Iterator[None]:
    """Every ODE block of ``model`` solves with ``settings`` inside the block."""
    blocks = ode_blocks(model)
    previous = [block.solver for block in blocks]
    for block in blocks:
        block.solver = settings
    try:
        yield
    finally:
        for block, solver in zip(blocks, previous):
            block.solver = solver
