"""What a failing batch does to a run: the policy (raise, skip, fallback), its exceptions and records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol

from torch import nn

from ..errors import SolverError
from ..log.files import append_jsonl, write_json_atomic
from ..models.ode_block import ode_blocks
from ..solvers.settings import SolverSettings
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


class Recovery(Protocol):
    """What the trainer lends the failure policy for one failed attempt: a training batch or an evaluation."""

    def log(self, failure: BaseException, action: str) -> None:
        """A warning in the log and a line in failures.jsonl, labelled ``action``."""

    def stop(self, failure: BaseException, why: str) -> NoReturn:
        """Record what reproduces the failure and raise ``StopTraining``."""
        ...

    def count_bad_batch(self) -> int:
        """One more batch skipped or retried in this run; the run's total so far."""
        ...

    def tally(self, counter: str) -> None:
        """One more for the current epoch's ``counter`` (one of ``EPOCH_COUNTERS``) and for the run's total."""

    def retry(self, fallback: SolverSettings) -> Any:
        """The attempt once more with the ``fallback`` solver; when that fails too, the run stops."""


class FailureAction(ABC):
    """What one ``train.on_solver_error`` value does with a failed training batch and a failed evaluation."""

    name: ClassVar[str]

    @abstractmethod
    def on_batch(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> dict[str, float] | None:
        """The batch's metrics record, or ``None`` when the batch is dropped; or the run stops."""

    @abstractmethod
    def on_evaluation(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> dict[str, Any]:
        """The test metrics (or what stands for them); or the run stops."""


class Raise(FailureAction):
    """Stop the run at the first failure."""

    name = "raise"

    def on_batch(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> NoReturn:
        recovery.stop(failure, "train.on_solver_error=raise")

    def on_evaluation(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> NoReturn:
        recovery.stop(failure, "in evaluation, train.on_solver_error=raise")


class Tolerate(FailureAction):
    """Keep training past a failed batch; each one counts towards ``max_bad_batches`` and the epoch's
    ``counter``."""

    counter: ClassVar[str]

    def on_batch(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> dict[str, float] | None:
        bad_batches = recovery.count_bad_batch()
        if policy.max_bad_batches is not None and bad_batches > policy.max_bad_batches:
            recovery.stop(
                failure, f"more than train.max_bad_batches={policy.max_bad_batches} batches skipped or retried"
            )
        recovery.tally(self.counter)
        return self.tolerate(policy, recovery)

    @abstractmethod
    def tolerate(self, policy: FailurePolicy, recovery: Recovery) -> dict[str, float] | None:
        """What becomes of the tolerated batch: its metrics record, or ``None`` when it is dropped."""


class Skip(Tolerate):
    """Drop the batch; leave the test metrics out, saying why."""

    name, counter = "skip", "skipped_batches"

    def tolerate(self, policy: FailurePolicy, recovery: Recovery) -> None:
        return None

    def on_evaluation(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> dict[str, Any]:
        return {"test_skipped": describe(failure)}


class Fallback(Tolerate):
    """Retry the batch, or the evaluation, once with the fallback solver."""

    name, counter = "fallback", "fallback_batches"

    def tolerate(self, policy: FailurePolicy, recovery: Recovery) -> dict[str, float]:
        assert policy.fallback is not None  # FailurePolicy refuses action "fallback" without one
        return recovery.retry(policy.fallback)

    def on_evaluation(self, policy: FailurePolicy, failure: BaseException, recovery: Recovery) -> dict[str, Any]:
        assert policy.fallback is not None  # FailurePolicy refuses action "fallback" without one
        return {**recovery.retry(policy.fallback), "test_fallback": True}


FAILURE_ACTIONS: dict[str, FailureAction] = {action.name: action for action in (Raise(), Skip(), Fallback())}
FAILURE_POLICIES = tuple(FAILURE_ACTIONS)  # the values train.on_solver_error accepts
EPOCH_COUNTERS = tuple(action.counter for action in FAILURE_ACTIONS.values() if isinstance(action, Tolerate))


@dataclass(frozen=True)
class FailurePolicy:
    """``action``: ``raise`` (stop the run), ``skip`` (drop the batch) or ``fallback`` (retry it once with the
    ``fallback`` solver). More than ``max_bad_batches`` skipped or retried batches stop the run."""

    action: str = "raise"
    fallback: SolverSettings | None = None
    max_bad_batches: int | None = None

    def __post_init__(self) -> None:
        if self.action not in FAILURE_ACTIONS:
            raise ValueError(f"failure policy {self.action!r}: accepted values: {', '.join(FAILURE_POLICIES)}")
        if self.action == Fallback.name and self.fallback is None:
            raise ValueError("failure policy 'fallback' needs the fallback solver's settings")

    def on_batch(self, failure: BaseException, recovery: Recovery) -> dict[str, float] | None:
        """A failed training batch: logged, then stopped at, dropped (``None``) or retried."""
        recovery.log(failure, self.action)
        return FAILURE_ACTIONS[self.action].on_batch(self, failure, recovery)

    def on_evaluation(self, failure: BaseException, recovery: Recovery) -> dict[str, Any]:
        """A failed evaluation: logged, then stopped at, left out or evaluated again."""
        recovery.log(failure, f"{self.action}, in evaluation")
        return FAILURE_ACTIONS[self.action].on_evaluation(self, failure, recovery)


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
        append_jsonl(
            self.path(FAILURES_NAME),
            {**position, "action": action, "error": describe(failure), "batch_indices": indices},
        )

    def stop(
        self,
        position: dict[str, int],
        indices: list[int] | None,
        failure: BaseException,
        why: str,
        model: nn.Module,
        batch: Any,
    ) -> StopTraining:
        """Write failure.json and failure.pt; the exception that stops the run."""
        status = failure_status(failure)
        write_json_atomic(
            self.path(FAILURE_NAME),
            {
                "status": status,
                "error": describe(failure),
                "why_stopped": why,
                "seed": self.seed,
                **position,
                "batch_indices": indices,
                "state_file": self.path(FAILURE_STATE_NAME).name,
                "config": self.config,
            },
        )
        save_checkpoint(self.path(FAILURE_STATE_NAME), {"model": model.state_dict(), "batch": batch})
        return StopTraining(status, f"{describe(failure)} at step {position['step']} ({why})")
