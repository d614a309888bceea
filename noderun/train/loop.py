"""The training loop: epochs of metered optimiser steps, evaluation, metrics and checkpoints.

The ``Trainer`` owns its state: ``state_dict()`` is the checkpoint's layout (``STATE_KEYS``) and
``load_state_dict()`` restores it. What a failed batch or evaluation does is the ``FailurePolicy``'s
(failures.py); what a task provides is the ``Task`` protocol (tasks/base.py)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sized
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.splits import DataSplits
from ..log.files import MetricsWriter
from ..log.progress import EpochProgress, Position
from ..models.regularize import TERMS
from ..tasks import Task
from .checkpoint import CHECKPOINT_NAME, random_states, restore_random_states, save_checkpoint
from .distributed import Processes, loss_module
from .failures import (
    BATCH_FAILURES,
    EPOCH_COUNTERS,
    FailurePolicy,
    FailureRecords,
    Interrupted,
    NonFiniteLoss,
    NonFiniteParameters,
    describe,
    solver_swapped,
)
from .meter import IterationMeter, peak_rss_mb
from .signals import StopRequest

if TYPE_CHECKING:
    from .failures import SolverSettings  # wherever failures.py takes it from

log = logging.getLogger("noderun")


@dataclass
class TrainState:
    """Where training stands: epochs completed, batches done in the current epoch, optimiser steps."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    bad_batches: int = 0  # skipped or retried by the failure policy, over the whole run
    skipped_batches: int = 0  # of those, dropped (train.on_solver_error=skip)
    fallback_batches: int = 0  # of those, trained with the fallback solver (train.on_solver_error=fallback)


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    test_batch_size: int
    max_iters: int | None
    seed: int
    progress: bool = True
    log_every: int | None = None  # steps between per-step TensorBoard scalars and plain progress lines
    keep_checkpoints: int | None = None  # every this many epochs, also keep the checkpoint as checkpoint_epoch<N>.pt
    policy: FailurePolicy = FailurePolicy()


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch of tensors (tuple, list or dict) on ``device``."""
    if isinstance(batch, dict):
        return {key: value.to(device) for key, value in batch.items()}
    return [part.to(device) for part in batch]


STEP_SCALARS = ("loss", "nfe_forward", "nfe_backward")  # to TensorBoard every ``log_every`` steps
STEP_STATS = ("nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected", "forward_s", "backward_s")
MEMORY_STATS = ["saved_tensors_mb", "cuda_peak_mb", "peak_rss_mb"]  # the largest over the processes
REGULARIZER_STATS = tuple(f"reg_{term}" for term in TERMS)  # the integrals of a regularised run (regularizer=...)

# The checkpoint's layout, written by ``Trainer.state_dict`` and read by ``Trainer.load_state_dict``.
STATE_KEYS = ("model", "optimizer", "scheduler", "state", "epoch_iterations", "epoch_failures", "random", "config")
OPTIONAL_STATE_KEYS = ("epoch_failures",)  # absent from checkpoints written before it was added
REQUIRED_STATE_KEYS = tuple(key for key in STATE_KEYS if key not in OPTIONAL_STATE_KEYS)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch``: a function of the seed and the epoch alone (resumable)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class Trainer:
    """Runs epochs until ``settings.epochs`` or ``settings.max_iters``; each epoch ends with a test
    evaluation, one metrics record and a checkpoint."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        data: DataSplits,
        device: torch.device,
        settings: TrainSettings,
        writer: MetricsWriter,
        output_dir: Path,
        config: dict[str, Any],
        processes: Processes = Processes(),
    ):
        self.model, self.task, self.optimizer, self.scheduler = model, task, optimizer, scheduler
        self.processes = processes
        self.loss = loss_module(model, task, processes, device)  # DistributedDataParallel over several processes
        self.data, self.device, self.settings, self.writer = data, device, settings, writer
        self.output_dir, self.config = output_dir, config
        self.state = TrainState()
        self.meter = IterationMeter(model, device)
        self.last_record: dict[str, Any] = {}
        self.epoch_iterations: list[dict[str, float]] = []  # the current epoch's, kept across a resume
        self.epoch_times: list[float] = []  # seconds of each full epoch this process trained
        self.epoch_failures = dict.fromkeys(EPOCH_COUNTERS, 0)  # the current epoch's
        self.stop = StopRequest()
        self.failures = FailureRecords(output_dir, settings.seed, config, processes.rank)

    def fit(self) -> dict[str, Any]:
        """Train to the end; return the last epoch's metrics record. A stop signal saves a checkpoint after
        the batch in progress and raises ``Interrupted``; a batch the policy cannot save raises ``StopTraining``."""
        with self.stop.listening():
            while self.state.epoch < self.settings.epochs and not self._budget_spent():
                started = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trains with; the schedule steps after
                self._train_epoch()
                partial = self._budget_spent() and self.state.batch_in_epoch < self._batches_per_epoch()
                if not partial:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
                    self.scheduler.step()
                seconds = time.perf_counter() - started
                train_metrics = self._aggregate(self.epoch_iterations)
                test_metrics = self._evaluate_with_policy()
                self.last_record = self._epoch_record(train_metrics, test_metrics, seconds, partial, lr)
                self.writer.write(self.last_record, self.state.step)
                log.info(self._epoch_line(self.last_record))
                if not partial:
                    self.epoch_iterations = []
                    self.epoch_failures = dict.fromkeys(self.epoch_failures, 0)
                    self.epoch_times.append(self.last_record["epoch_time_s"])
                self._stop_if_asked()
                every = self.settings.keep_checkpoints
                self.save_checkpoint(keep=bool(every) and not partial and self.state.epoch % every == 0)
        return self.last_record

    def _stop_if_asked(self) -> None:
        self.processes.share_stop(self.stop)
        if self.stop.signum is not None:
            self.save_checkpoint()
            self.stop.hand_off()
            raise Interrupted(self.stop.signum, self.state.step)

    def _budget_spent(self) -> bool:
        return self.settings.max_iters is not None and self.state.step >= self.settings.max_iters

    def _batches_per_epoch(self) -> int:
        """Whole batches, and a last smaller one when it leaves every process at least a sample."""
        samples, size = len(cast(Sized, self.data.train)), self.settings.batch_size  # map-style: has a length
        return samples // size + (samples % size >= self.processes.world_size)

    def _run_steps(self) -> int:
        """The optimiser steps of the whole run: every epoch's batches, or the step budget if smaller."""
        steps = self.settings.epochs * self._batches_per_epoch()
        return steps if self.settings.max_iters is None else min(steps, self.settings.max_iters)

    def _train_epoch(self) -> None:
        order = epoch_order(len(cast(Sized, self.data.train)), self.settings.seed, self.state.epoch)
        size = self.settings.batch_size
        first = self.state.batch_in_epoch * size
        last = len(order)
        if self.settings.max_iters is not None:  # never draw a batch (and its augmentation) past the budget
            last = min(last, first + (self.settings.max_iters - self.state.step) * size)
        shards = (self.processes.shard(order[start : start + size]) for start in range(first, last, size))
        batches = [shard for shard in shards if shard]
        loader = DataLoader(
            self.data.train, batch_sampler=batches, generator=torch.Generator()
        )  # leaves the global random state to the augmentation
        iterations = self.epoch_iterations
        position = Position(
            f"epoch {self.state.epoch + 1}/{self.settings.epochs}",
            self.state.batch_in_epoch,
            self.state.batch_in_epoch + len(batches),
            self.state.step,
            self._run_steps(),
        )
        with EpochProgress(
            position, self.settings.progress and self.processes.main, self.settings.log_every
        ) as progress:
            for number, (batch, indices) in enumerate(zip(loader, batches), start=1):
                record = self._train_step(batch, indices)
                if record is not None:
                    iterations.append(record)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                progress.advance(self._live_status(iterations) if iterations else "")
                self._write_step_scalars(iterations)
                if number < len(batches):  # after the last batch, fit() stops once the epoch is recorded
                    self._stop_if_asked()

    def _write_step_scalars(self, iterations: list[dict[str, float]]) -> None:
        """Every ``log_every`` steps, the mean loss and NFE of the steps since to TensorBoard (``step/``)."""
        every = self.settings.log_every
        if every and iterations and self.state.step % every == 0:
            recent = iterations[-every:]
            keys = STEP_SCALARS + tuple(key for key in REGULARIZER_STATS if key in recent[-1])
            self.writer.write_step(
                {key: sum(i.get(key, 0.0) for i in recent) / len(recent) for key in keys}, self.state.step
            )

    def _train_step(self, batch, indices: list[int]) -> dict[str, float] | None:
        """One optimiser step; a failing batch goes to the failure policy (``None``: skipped)."""
        self.model.train()
        batch = to_device(batch, self.device)
        try:
            return self._optimise(batch)
        except NonFiniteParameters as failure:
            self._log_failure(indices, failure, "stop")
            self._stop(failure, "no later batch can train", batch, indices)
        except BATCH_FAILURES as failure:
            self.optimizer.zero_grad(set_to_none=True)
            return self._recover(batch, indices, failure)

    def _optimise(self, batch) -> dict[str, float]:
        failure = None
        try:
            with self.meter.forward():
                loss, counts = self.loss(batch)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(f"the training loss is {loss_value}")
        except BATCH_FAILURES as error:
            failure = error
        failure = self.processes.share_failure(failure)  # every process skips the backward pass together
        if failure is not None:
            raise failure
        self.optimizer.zero_grad(set_to_none=True)
        self.meter.backward(loss)
        gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
        if gradients and not math.isfinite(float(torch.nn.utils.get_total_norm(gradients))):
            raise NonFiniteLoss("the gradients are not finite (the loss was finite)")
        self.optimizer.step()
        if not math.isfinite(float(torch.nn.utils.get_total_norm(list(self.model.parameters())))):
            raise NonFiniteParameters("the optimiser step made parameters non-finite (the gradients were finite)")
        return {"loss": loss_value, **counts, **self.meter.finish()}

    def _recover(self, batch, indices: list[int], failure: BaseException) -> dict[str, float] | None:
        """Apply the failure policy to a failed batch: the run stops, or the batch is skipped or retried."""
        attempt = FailedAttempt(self, lambda: self._optimise(batch), batch, indices)
        return self.settings.policy.on_batch(failure, attempt)

    def _evaluate_with_policy(self) -> dict[str, Any]:
        """``evaluate()``; when its solves fail: stop (raise), leave the test metrics out (skip), or evaluate
        again with the fallback solver."""
        try:
            return self.evaluate()
        except BATCH_FAILURES as failure:
            return self.settings.policy.on_evaluation(failure, FailedAttempt(self, self.evaluate))

    def _log_failure(self, indices: list[int] | None, failure: BaseException, action: str) -> None:
        log.warning(f"step {self.state.step}: {describe(failure)} ({action})")
        self.failures.add(self._position(), indices, failure, action)

    def _stop(self, failure: BaseException, why: str, batch=None, indices: list[int] | None = None) -> NoReturn:
        """Record what reproduces the failure (the batch, if it was a training batch) and stop the run."""
        raise self.failures.stop(self._position(), indices, failure, why, self.model, batch)

    def _position(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "step": self.state.step, "batch_in_epoch": self.state.batch_in_epoch}

    def _live_status(self, iterations: list[dict[str, float]]) -> str:
        recent = iterations[-20:]
        loss = sum(i["loss"] for i in recent) / len(recent)
        parts = (
            f"loss {loss:.3f}",
            self.task.live_status(recent),
            f"NFE f/b {recent[-1]['nfe_forward']:.0f}/{recent[-1]['nfe_backward']:.0f}",
        )
        return "  ".join(part for part in parts if part)

    def evaluate(self) -> dict[str, float]:
        """The task's test metrics and the mean forward evaluations per test batch (failures propagate)."""
        self.model.eval()
        for block in self.meter.blocks:
            block.stats.reset()
        loader = DataLoader(self.data.test, batch_size=self.settings.test_batch_size, generator=torch.Generator())
        metrics = self.task.evaluate(self.model, (to_device(batch, self.device) for batch in loader))
        nfe = sum(block.stats.nfe_forward for block in self.meter.blocks)
        return {**metrics, "test_nfe_forward_mean": nfe / max(1, len(loader))}

    def _aggregate(self, iterations: list[dict[str, float]]) -> dict[str, Any]:
        """The epoch's training metrics from its per-batch records, reduced over the processes: losses and
        means averaged, maxima and memory maximised."""
        count = sum(i["count"] for i in iterations) or 1
        metrics: dict[str, Any] = {
            "iterations": len(iterations),
            "train_loss": sum(i["loss"] * i["count"] for i in iterations) / count if iterations else float("nan"),
            **(self.task.train_metrics(iterations) if iterations else {}),
            **self.epoch_failures,
        }
        for key in STEP_STATS:
            values = [i[key] for i in iterations if key in i] or [0]
            metrics[f"{key}_mean"] = sum(values) / len(values)
            metrics[f"{key}_max"] = max(values)
        regularizers = [key for key in REGULARIZER_STATS if any(key in i for i in iterations)]
        for key in regularizers:
            values = [i[key] for i in iterations if key in i]
            metrics[f"{key}_mean"] = sum(values) / len(values)
        metrics["saved_tensors_mb"] = max((i["saved_tensors_mb"] for i in iterations), default=0.0)
        if self.device.type == "cuda":
            metrics["cuda_peak_mb"] = max((i["cuda_peak_mb"] for i in iterations), default=0.0)
        metrics["peak_rss_mb"] = peak_rss_mb()
        mean_keys = ["train_loss"] + [f"{key}_mean" for key in (*STEP_STATS, *regularizers)]
        return self.processes.gather(
            metrics, mean_keys=mean_keys, max_keys=[f"{key}_max" for key in STEP_STATS] + MEMORY_STATS
        )

    def _epoch_record(
        self, train_metrics: dict[str, Any], test_metrics: dict[str, Any], seconds: float, partial: bool, lr: float
    ) -> dict[str, Any]:
        """One line of metrics.jsonl: where training stands, the epoch's training and test metrics, its
        training time and the learning rate its steps trained with."""
        return {
            "epoch": self.state.epoch if not partial else self.state.epoch + 1,
            "step": self.state.step,
            "partial_epoch": partial,
            **train_metrics,
            **test_metrics,
            "epoch_time_s": seconds,
            "lr": lr,
        }

    def _epoch_line(self, record: dict[str, Any]) -> str:
        headline = self.task.headline
        return (
            f"epoch {record['epoch']} step {record['step']}: train loss {record['train_loss']:.4f}, "
            f"{headline} {record.get(headline, float('nan')):.4g}, NFE forward "
            f"{record['nfe_forward_mean']:.1f} backward {record['nfe_backward_mean']:.1f}, "
            f"saved tensors {record['saved_tensors_mb']:.1f} MB, {record['epoch_time_s']:.1f} s"
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (``STATE_KEYS``): model, optimiser, schedule,
        position, the current epoch's records and failure counts, every process's random states, and the
        config (kept for the record and for matching; never restored). Every process must call it: the
        random states are gathered from all of them."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": asdict(self.state),
            "epoch_iterations": list(self.epoch_iterations),
            "epoch_failures": dict(self.epoch_failures),
            "random": self.processes.random_states(random_states()),
            "config": self.config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (as ``state_dict()`` wrote it; ``epoch_failures`` may be missing from an
        older checkpoint). Check it first (``checkpoint.check_matches``): a mismatch found here raises after
        part of it is loaded."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = TrainState(**state["state"])
        self.epoch_iterations = list(state["epoch_iterations"])
        self.epoch_failures = {**dict.fromkeys(EPOCH_COUNTERS, 0), **state.get("epoch_failures", {})}
        restore_random_states(self.processes.own_random_states(state["random"]))

    def save_checkpoint(self, keep: bool = False) -> None:
        """``state_dict()`` written atomically by process 0; with ``keep``, also as ``checkpoint_epoch<N>.pt``
        (``train.keep_checkpoints``: the model every few epochs, for studies over training)."""
        state = self.state_dict()
        if self.processes.main:
            save_checkpoint(self.output_dir / CHECKPOINT_NAME, state)
            if keep:
                save_checkpoint(self.output_dir / f"checkpoint_epoch{self.state.epoch}.pt", state)


@dataclass
class FailedAttempt:
    """A failed training batch (with its ``batch`` and ``indices``) or evaluation (without), as the failure
    policy sees it: the ``failures.Recovery`` the trainer lends it."""

    trainer: Trainer
    attempt: Callable[[], Any]
    batch: Any = None
    indices: list[int] | None = None

    def log(self, failure: BaseException, action: str) -> None:
        self.trainer._log_failure(self.indices, failure, action)

    def stop(self, failure: BaseException, why: str) -> NoReturn:
        self.trainer._stop(failure, why, self.batch, self.indices)

    def count_bad_batch(self) -> int:
        self.trainer.state.bad_batches += 1
        return self.trainer.state.bad_batches

    def tally(self, counter: str) -> None:
        self.trainer.epoch_failures[counter] += 1
        setattr(self.trainer.state, counter, getattr(self.trainer.state, counter) + 1)  # the run's total

    def retry(self, fallback: SolverSettings) -> Any:
        """``attempt()`` once more with the ``fallback`` solver; when that fails too, the run stops."""
        try:
            with solver_swapped(self.trainer.model, fallback):
                return self.attempt()
        except BATCH_FAILURES as second:
            self.trainer.optimizer.zero_grad(set_to_none=True)
            self.log(second, "raise")
            self.stop(second, "the fallback solver failed too")
