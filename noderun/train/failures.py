"""What a failing batch does to a run: the policy (raise, skip, fallback), its exceptions and records."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from ..errors import SolverError
from ..log.files import append_jsonl, write_json_atomic
from ..models.ode_block import SolverSettings, ode_blocks
from .checkpoint import save_checkpoint

FAILURES_NAME = "failures.jsonl"  # every batch the failure policy acted on
FAILURE_NAME = "failure.json"  # the failure that stopped the run: what reproduces it
FAILURE_STATE_NAME = "failure.pt"  # the model and the batch at that moment


class NonFiniteLoss(RuntimeError):
    """The loss or the gradients of a batch are NaN or infinite."""


class NonFiniteParameters(NonFiniteLoss):
    """An optimiser step left parameters NaN or infinite: no later batch can train, whatever the policy."""


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


def describe(failure: BaseException) -> str:
    return f"{type(failure).__name__}: {failure}"


@dataclass
class FailureRecords:
    """The run directory's record of failures: one line per failed batch in failures.jsonl, and for the
    failure that stops the run, failure.json (seed, position, batch indices, config) and failure.pt (the
    model and the batch). With several processes, those of rank r > 0 carry ``.rank{r}`` in their names."""

    output_dir: Path
    seed: int
    config: dict[str, Any]
    rank: int = 0

    def path(self, name: str) -> Path:
        if self.rank == 0:
            return self.output_dir / name
        stem, dot, suffix = name.partition(".")
        return self.output_dir / f"{stem}.rank{self.rank}{dot}{suffix}"

    def add(self, position: dict[str, int], indices: list[int] | None, failure: BaseException, action: str) -> None:
        append_jsonl(self.path(FAILURES_NAME), {**position, "action": action, "error": describe(failure),
                                                "batch_indices": indices})

    def stop(self, position: dict[str, int], indices: list[int] | None, failure: BaseException, why: str,
             model: nn.Module, batch: Any) -> StopTraining:
        """Write failure.json and failure.pt; the exception that stops the run."""
        status = failure_status(failure)
        write_json_atomic(self.path(FAILURE_NAME), {
            "status": status, "error": describe(failure), "why_stopped": why, "seed": self.seed, **position,
            "batch_indices": indices, "state_file": self.path(FAILURE_STATE_NAME).name, "config": self.config})
        save_checkpoint(self.path(FAILURE_STATE_NAME), {"model": model.state_dict(), "batch": batch})
        return StopTraining(status, f"{describe(failure)} at step {position['step']} ({why})")
