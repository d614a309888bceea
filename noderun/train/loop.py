"""The training loop: epochs of metered optimiser steps, evaluation, metrics and checkpoints."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.splits import DataSplits
from ..log.console import epoch_progress
from ..log.files import MetricsWriter
from .checkpoint import CHECKPOINT_NAME, random_states, save_checkpoint
from .distributed import Processes, loss_module
from .failures import (BATCH_FAILURES, describe, FailurePolicy, FailureRecords, Interrupted, NonFiniteLoss, NonFiniteParameters,
                       solver_swapped)
from .meter import IterationMeter, peak_rss_mb
from .signals import StopRequest

log = logging.getLogger("noderun")


@dataclass
class TrainState:
    """Where training stands: epochs completed, batches done in the current epoch, optimiser steps."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    bad_batches: int = 0  # skipped or retried by the failure policy, over the whole run


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    test_batch_size: int
    max_iters: int | None
    seed: int
    progress: bool = True
    policy: FailurePolicy = FailurePolicy()


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch of tensors (tuple, list or dict) on ``device``."""
    if isinstance(batch, dict):
        return {key: value.to(device) for key, value in batch.items()}
    return [part.to(device) for part in batch]


STEP_STATS = ("nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected", "forward_s", "backward_s")
MEMORY_STATS = ["saved_tensors_mb", "cuda_peak_mb", "peak_rss_mb"]  # the largest over the processes


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch``: a function of the seed and the epoch alone (resumable)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class Trainer:
    """Runs epochs until ``settings.epochs`` or ``settings.max_iters``; each epoch ends with a test
    evaluation, one metrics record and a checkpoint."""

    def __init__(self, model: nn.Module, task: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                 data: DataSplits, device: torch.device, settings: TrainSettings, writer: MetricsWriter,
                 output_dir: Path, config: dict[str, Any], processes: Processes = Processes()):
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
        self.epoch_failures = {"skipped_batches": 0, "fallback_batches": 0}  # the current epoch's
        self.stop = StopRequest()
        self.failures = FailureRecords(output_dir, settings.seed, config, processes.rank)

    def fit(self) -> dict[str, Any]:
        """Train to the end; return the last epoch's metrics record. A stop signal saves a checkpoint after
        the batch in progress and raises ``Interrupted``; a batch the policy cannot save raises ``StopTraining``."""
        with self.stop.listening():
            while self.state.epoch < self.settings.epochs and not self._budget_spent():
                started = time.perf_counter()
                self._train_epoch()
                partial = self._budget_spent() and self.state.batch_in_epoch < self._batches_per_epoch()
                if not partial:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
                    self.scheduler.step()
                self.last_record = self._epoch_record(self.epoch_iterations, time.perf_counter() - started, partial)
                self.writer.write(self.last_record, self.state.step)
                log.info(self._epoch_line(self.last_record))
                if not partial:
                    self.epoch_iterations = []
                    self.epoch_failures = dict.fromkeys(self.epoch_failures, 0)
                    self.epoch_times.append(self.last_record["epoch_time_s"])
                self._stop_if_asked()
                self.save_checkpoint()
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
        samples, size = len(self.data.train), self.settings.batch_size
        return samples // size + (samples % size >= self.processes.world_size)

    def _train_epoch(self) -> None:
        order = epoch_order(len(self.data.train), self.settings.seed, self.state.epoch)
        size = self.settings.batch_size
        first = self.state.batch_in_epoch * size
        last = len(order)
        if self.settings.max_iters is not None:  # never draw a batch (and its augmentation) past the budget
            last = min(last, first + (self.settings.max_iters - self.state.step) * size)
        shards = (self.processes.shard(order[start:start + size]) for start in range(first, last, size))
        batches = [shard for shard in shards if shard]
        loader = DataLoader(self.data.train, batch_sampler=batches,
                            generator=torch.Generator())  # leaves the global random state to the augmentation
        iterations = self.epoch_iterations
        with epoch_progress(self.settings.progress and self.processes.main) as progress:
            bar = progress.add_task(f"epoch {self.state.epoch + 1}/{self.settings.epochs}", total=len(loader),
                                    status="")
            for number, (batch, indices) in enumerate(zip(loader, batches), start=1):
                record = self._train_step(batch, indices)
                if record is not None:
                    iterations.append(record)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                progress.update(bar, advance=1, status=self._live_status(iterations) if iterations else "")
                if number < len(batches):  # after the last batch, fit() stops once the epoch is recorded
                    self._stop_if_asked()

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
        policy = self.settings.policy
        self._log_failure(indices, failure, policy.action)
        if policy.action == "raise":
            self._stop(failure, "train.on_solver_error=raise", batch, indices)
        self.state.bad_batches += 1
        if policy.max_bad_batches is not None and self.state.bad_batches > policy.max_bad_batches:
            self._stop(failure, f"more than train.max_bad_batches={policy.max_bad_batches} batches skipped or "
                                "retried", batch, indices)
        if policy.action == "skip":
            self.epoch_failures["skipped_batches"] += 1
            return None
        self.epoch_failures["fallback_batches"] += 1
        return self._with_fallback(lambda: self._optimise(batch), batch, indices)

    def _evaluate_with_policy(self) -> dict[str, Any]:
        """``evaluate()``; when its solves fail: stop (raise), leave the test metrics out (skip), or evaluate
        again with the fallback solver."""
        try:
            return self.evaluate()
        except BATCH_FAILURES as failure:
            policy = self.settings.policy
            self._log_failure(None, failure, f"{policy.action}, in evaluation")
            if policy.action == "raise":
                self._stop(failure, "in evaluation, train.on_solver_error=raise")
            if policy.action == "skip":
                return {"test_skipped": describe(failure)}
            return {**self._with_fallback(self.evaluate), "test_fallback": True}

    def _with_fallback(self, attempt: Callable[[], Any], batch=None, indices: list[int] | None = None) -> Any:
        """``attempt()`` once more with the fallback solver; when that fails too, the run stops."""
        try:
            with solver_swapped(self.model, self.settings.policy.fallback):
                return attempt()
        except BATCH_FAILURES as second:
            self.optimizer.zero_grad(set_to_none=True)
            self._log_failure(indices, second, "raise")
            self._stop(second, "the fallback solver failed too", batch, indices)

    def _log_failure(self, indices: list[int] | None, failure: BaseException, action: str) -> None:
        log.warning(f"step {self.state.step}: {describe(failure)} ({action})")
        self.failures.add(self._position(), indices, failure, action)

    def _stop(self, failure: BaseException, why: str, batch=None, indices: list[int] | None = None) -> None:
        """Record what reproduces the failure (the batch, if it was a training batch) and stop the run."""
        raise self.failures.stop(self._position(), indices, failure, why, self.model, batch)

    def _position(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "step": self.state.step, "batch_in_epoch": self.state.batch_in_epoch}

    def _live_status(self, iterations: list[dict[str, float]]) -> str:
        recent = iterations[-20:]
        loss = sum(i["loss"] for i in recent) / len(recent)
        return (f"loss {loss:.3f}  {self.task.live_status(recent)}  "
                f"NFE f/b {recent[-1]['nfe_forward']:.0f}/{recent[-1]['nfe_backward']:.0f}")

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        for block in self.meter.blocks:
            block.stats.reset()
        loader = DataLoader(self.data.test, batch_size=self.settings.test_batch_size, generator=torch.Generator())
        metrics = self.task.evaluate(self.model, (to_device(batch, self.device) for batch in loader))
        nfe = sum(block.stats.nfe_forward for block in self.meter.blocks)
        return {**metrics, "test_nfe_forward_mean": nfe / max(1, len(loader))}

    def _epoch_record(self, iterations: list[dict[str, float]], seconds: float, partial: bool) -> dict[str, Any]:
        count = sum(i["count"] for i in iterations) or 1
        record: dict[str, Any] = {
            "epoch": self.state.epoch if not partial else self.state.epoch + 1,
            "step": self.state.step,
            "partial_epoch": partial,
            "iterations": len(iterations),
            "train_loss": sum(i["loss"] * i["count"] for i in iterations) / count if iterations else float("nan"),
            **(self.task.train_metrics(iterations) if iterations else {}),
            **self.epoch_failures,
        }
        for key in STEP_STATS:
            values = [i[key] for i in iterations if key in i] or [0]
            record[f"{key}_mean"] = sum(values) / len(values)
            record[f"{key}_max"] = max(values)
        record["saved_tensors_mb"] = max((i["saved_tensors_mb"] for i in iterations), default=0.0)
        if self.device.type == "cuda":
            record["cuda_peak_mb"] = max((i["cuda_peak_mb"] for i in iterations), default=0.0)
        record["peak_rss_mb"] = peak_rss_mb()
        self.processes.gather(record, mean_keys=["train_loss"] + [f"{key}_mean" for key in STEP_STATS],
                              max_keys=[f"{key}_max" for key in STEP_STATS] + MEMORY_STATS)
        record.update(self._evaluate_with_policy())
        record["epoch_time_s"] = seconds
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        return record

    def _epoch_line(self, record: dict[str, Any]) -> str:
        headline = self.task.headline
        return (f"epoch {record['epoch']} step {record['step']}: train loss {record['train_loss']:.4f}, "
                f"{headline} {record.get(headline, float('nan')):.4g}, NFE forward "
                f"{record['nfe_forward_mean']:.1f} backward {record['nfe_backward_mean']:.1f}, "
                f"saved tensors {record['saved_tensors_mb']:.1f} MB, {record['epoch_time_s']:.1f} s")

    def save_checkpoint(self) -> None:
        states = self.processes.random_states(random_states())
        if not self.processes.main:
            return
        save_checkpoint(self.output_dir / CHECKPOINT_NAME, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": asdict(self.state),
            "epoch_iterations": self.epoch_iterations,
            "epoch_failures": self.epoch_failures,
            "random": states,
            "config": self.config,
        })
