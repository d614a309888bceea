"""One run on several processes (``torchrun --nproc-per-node N noderun train ...``): the process group,
which samples of a global batch this process trains on, and statistics gathered from every process."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SolverError
from ..models.ode_block import ode_blocks
from ..models.regularize import penalty
from .failures import failure_status
from .signals import StopRequest


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's ``world_size`` processes (1: an ordinary run); ``device`` is
    where its collectives' tensors live (a CUDA device under NCCL)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The process that writes logs, checkpoints and the summary."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, batch_indices: list[int]) -> list[int]:
        """This process's share of a global batch: every ``world_size``-th sample from its rank on, of the
        batch cut to a multiple of ``world_size`` (every process gets as many; a last batch smaller than
        ``world_size`` leaves every share empty)."""
        whole = len(batch_indices) - len(batch_indices) % self.world_size
        return batch_indices[:whole][self.rank :: self.world_size]

    def share_failure(self, failure: BaseException | None) -> BaseException | None:
        """The batch failure every process acts on: its own, else one reported by another process (so that
        none waits in the gradient all-reduce for a process that stopped)."""
        if not self.active:
            return failure
        code = 0 if failure is None else 2 if failure_status(failure) == "diverged" else 1
        worst = self._reduce_max([code])[0]
        if failure is None and worst:
            return SolverError(
                f"another process's batch failed ({'diverged' if worst == 2 else 'failed'})", nonfinite=worst == 2
            )
        return failure

    def share_stop(self, stop: StopRequest) -> None:
        """A stop signal received by any process stops them all after the same batch."""
        if self.active and self._reduce_max([stop.signum or 0])[0] and stop.signum is None:
            stop.signum = signal.SIGTERM

    def _reduce_max(self, values: list[int]) -> list[int]:
        flags = torch.tensor(values, device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return flags.tolist()

    def random_states(self, states: dict[str, Any]) -> dict[str, Any]:
        """Every process's random states (they differ: each draws for its own share), for the checkpoint."""
        if not self.active:
            return states
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, states)
        return {"ranks": gathered}

    def own_random_states(self, states: dict[str, Any]) -> dict[str, Any]:
        return states["ranks"][self.rank] if "ranks" in states else states

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value`` on every process."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, record: dict[str, Any], mean_keys: list[str], max_keys: list[str]) -> dict[str, Any]:
        """``record`` with ``mean_keys`` averaged and ``max_keys`` maximised over the processes."""
        if not self.active:
            return record
        for keys, op in ((mean_keys, dist.ReduceOp.SUM), (max_keys, dist.ReduceOp.MAX)):
            present = [key for key in keys if key in record]
            values = torch.tensor([float(record[key]) for key in present], dtype=torch.float64, device=self.device)
            dist.all_reduce(values, op=op)
            if op == dist.ReduceOp.SUM:
                values /= self.world_size
            record.update(zip(present, values.tolist()))
        return record


def environment_processes() -> Processes:
    """What torchrun (or any launcher setting ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) says."""
    return Processes(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def start(requested: bool, device: torch.device) -> Processes:
    """Join the process group when the launcher started several processes (or ``train.distributed=true``):
    NCCL on CUDA, gloo on the CPU."""
    processes = environment_processes()
    if not (processes.active or requested):
        return processes
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError(
            "train.distributed=true needs a launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and "
            "MASTER_PORT: run `torchrun --nproc-per-node N -m noderun.cli train ...`"
        )
    if device.type == "cuda":
        torch.cuda.set_device(processes.local_rank)
        processes = replace(processes, device=f"cuda:{processes.local_rank}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return processes


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class TaskLoss(nn.Module):
    """The task's loss on a batch as a module's forward, so that DistributedDataParallel sees the model
    run (and averages its gradients over the processes in the backward pass, whatever the grad mode).
    The ODE blocks' regularisers (``regularizer=...``) are added to it, and their integrals to the counts."""

    def __init__(self, model: nn.Module, task: Any):
        super().__init__()
        self.model, self.task = model, task
        self.blocks = ode_blocks(model)

    def forward(self, batch):
        for block in self.blocks:
            block.integrals = {}
        loss, counts = self.task.loss(self.model, batch)
        regularization, integrals = penalty(self.blocks)
        return loss + regularization, {**counts, **integrals}


def loss_module(model: nn.Module, task: Any, processes: Processes, device: torch.device) -> nn.Module:
    module = TaskLoss(model, task)
    if not processes.active:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
