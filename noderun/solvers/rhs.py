"""The right-hand side as the solvers call it: ``rhs(t: float, y) -> dy/dt``, with a call counter."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


class CountingRHS:
    """Calls ``func(t, y)`` with ``t`` as a tensor of ``dtype`` on ``device`` (0-dim from a float, or a
    tensor of one time per sample under per-sample step control); counts the calls."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype, device: torch.device):
        self.func = func
        self.dtype = dtype
        self.device = device
        self.calls = 0

    def __call__(self, t: float | Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        # a float (the shared clock's times) is tested by type first: isinstance on Tensor costs more
        if type(t) is not float and isinstance(t, Tensor):
            return self.func(t.to(self.dtype), y)
        return self.func(torch.scalar_tensor(t, dtype=self.dtype, device=self.device), y)
