"""The right-hand side as the solvers call it: ``rhs(t: float, y) -> dy/dt``, with a call counter."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


class CountingRHS:
    """Calls ``func(t, y)`` with ``t`` as a 0-dim tensor of ``dtype`` on ``device``; counts the calls."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype, device: torch.device):
        self.func = func
        self.dtype = dtype
        self.device = device
        self.calls = 0

    def __call__(self, t: float, y: Tensor) -> Tensor:
        self.calls += 1
        return self.func(torch.tensor(t, dtype=self.dtype, device=self.device), y)
