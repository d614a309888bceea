"""An ODE block: a network layer whose output is the solution of ``dh/dt = f(t, h)`` at the end time."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..odeint import solve
from ..solvers.settings import SolverSettings
from ..solvers.stats import SolveStats

__all__ = ["ODEBlock", "SolverSettings", "ode_blocks"]


class ODEBlock(nn.Module):
    """Maps ``h(0)`` to ``h(T)`` by solving with ``func``; fills ``self.stats`` on every solve."""

    def __init__(self, func: nn.Module, solver: SolverSettings, integration_time: float = 1.0):
        """``solver``: the parsed settings every solve of this block uses (swapped whole, never re-parsed)."""
        super().__init__()
        self.func, self.solver, self.stats = func, solver, SolveStats()
        self.register_buffer("t", torch.tensor([0.0, integration_time]), persistent=False)

    def forward(self, h: Tensor) -> Tensor:
        return self.trajectory(h, self.t)[-1]

    def trajectory(self, h: Tensor | tuple[Tensor, ...], times: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The solution at every time of ``times`` (1-D, starting at h's time): ``(len(times), *h.shape)``,
        or for a tuple state a tuple of such solutions (times in the first tensor's dtype)."""
        like = h[0] if isinstance(h, (tuple, list)) else h
        return solve(self.func, h, times.to(like.dtype), self.solver, stats=self.stats)


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    return [module for module in model.modules() if isinstance(module, ODEBlock)]
