"""Metering one training iteration: NFE of every ODE block, memory, and time."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..models.ode_block import ode_blocks

MB = 2**20


class SavedTensorBytes:
    """Bytes of distinct activation storages saved for backward while ``active()`` (parameters excluded)."""

    def __init__(self) -> None:
        self.bytes, self._seen = 0, set()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if not (tensor.is_leaf and tensor.requires_grad):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in self._seen:
                self._seen.add(storage.data_ptr())
                self.bytes += storage.nbytes()
        return tensor.detach()  # the tensor itself would tie a saved output to its own grad_fn: a leaked cycle

    @contextmanager
    def active(self):
        self.bytes, self._seen = 0, set()
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield self
        self._seen = set()


def peak_rss_mb() -> float:
    """The process's peak resident memory (``ru_maxrss``: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


class IterationMeter:
    """NFE forward/backward, accepted/rejected steps, memory, and seconds of one iteration: the forward
    pass (to the loss), the backward pass, and the whole step."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.blocks, self.device = ode_blocks(model), device
        self.saved = SavedTensorBytes()

    def _now(self) -> float:
        if self.device.type == "cuda":  # queued kernels belong to the phase that launched them
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Wrap the forward pass, up to the loss: starts the iteration and counts the bytes saved for backward."""
        for block in self.blocks:
            block.stats.reset()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = self._now()
        with self.saved.active():
            yield
        self._forward_done = self._now()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, timed."""
        loss.backward()
        self._backward_done = self._now()

    def finish(self) -> dict[str, float]:
        """Call after the optimiser step."""
        stats = [block.stats for block in self.blocks]
        record = {
            "nfe_forward": sum(s.nfe_forward for s in stats),
            "nfe_backward": sum(s.nfe_backward for s in stats),
            "steps_accepted": sum(s.steps_accepted for s in stats),
            "steps_rejected": sum(s.steps_rejected for s in stats),
            "saved_tensors_mb": self.saved.bytes / MB,
            "forward_s": self._forward_done - self._start,
            "backward_s": self._backward_done - self._forward_done,
            "seconds": self._now() - self._start,
        }
        if self.device.type == "cuda":
            record["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / MB
        return record
