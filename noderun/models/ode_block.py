"""An ODE block: a network layer whose output is the solution of ``dh/dt = f(t, h)`` at the end time."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..odeint import solve
from ..solvers.settings import SolverSettings
from ..solvers.stats import SolveStats
from .regularize import Regularization, regularized_solve

__all__ = ["ODEBlock", "SolverSettings", "ode_blocks"]


class ODEBlock(nn.Module):
    """Maps ``h(0)`` to ``h(T)`` by solving with ``func``; fills ``self.stats`` on every solve.

    In training (``self.training`` with gradients on), the block also integrates the terms of
    ``self.regularization`` and adds their batch means to ``self.integrals`` (cleared by the caller), and
    ``span()`` draws its end time from ``[T - end_time_jitter, T + end_time_jitter]`` (STEER)."""

    t: Tensor  # the buffer ``[0, T]``

    def __init__(self, func: nn.Module, solver: SolverSettings, integration_time: float = 1.0):
        """``solver``: the parsed settings every solve of this block uses (swapped whole, never re-parsed)."""
        super().__init__()
        self.func, self.solver, self.stats = func, solver, SolveStats()
        self.register_buffer("t", torch.tensor([0.0, integration_time]), persistent=False)
        self.regularization = Regularization()
        self.integrals: dict[str, Tensor] = {}
        self.end_time_jitter = 0.0

    def forward(self, h: Tensor) -> Tensor:
        return self.trajectory(h, self.span())[-1]

    def span(self) -> Tensor:
        """``[0, T]``, with T jittered uniformly by ``±end_time_jitter`` in training."""
        if not (self.training and self.end_time_jitter > 0):
            return self.t
        shift = (2 * torch.rand((), device=self.t.device) - 1) * self.end_time_jitter
        return torch.stack([self.t[0], self.t[1] + shift])

    def trajectory(self, h: Tensor | tuple[Tensor, ...], times: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The solution at every time of ``times`` (1-D, starting at h's time): ``(len(times), *h.shape)``,
        or for a tuple state a tuple of such solutions (times in the first tensor's dtype)."""
        like = h[0] if isinstance(h, (tuple, list)) else h
        times = times.to(like.dtype)
        if not (self.training and self.regularization.terms and torch.is_grad_enabled()):
            return solve(self.func, h, times, self.solver, stats=self.stats)
        solution, integrals = regularized_solve(self.func, h, times, self.solver, self.stats, self.regularization)
        for term, integral in integrals.items():
            self.integrals[term] = self.integrals.get(term, 0.0) + integral
        return solution


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    return [module for module in model.modules() if isinstance(module, ODEBlock)]
