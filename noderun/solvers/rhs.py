"""The right-hand side as the solvers call it: ``rhs(t: float, y) -> dy/dt``, with a call counter."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import SolverError


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


class CountedRHS(Protocol):
    """A right-hand side that counts its calls, as the integration loop takes it: a ``CountingRHS``, or
    ``ShiftedEnds`` around one."""

    @property
    def func(self) -> Callable[[Tensor, Tensor], Tensor]: ...
    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def calls(self) -> int: ...
    def __call__(self, t: float | Tensor, y: Tensor) -> Tensor: ...


class ShiftedEnds:
    """``rhs`` whose evaluations at the current step's start or end are moved one representable time (in the
    state's dtype) into the step, for dynamics that jump there: at both ends of every step (the fixed-step
    option ``perturb``), or at the ends that fall on a time of ``jump_t`` (adaptive methods). ``step`` names
    the step about to be taken; other evaluations pass through unchanged."""

    def __init__(self, rhs: CountedRHS, every_step: bool, jumps: tuple[float, ...]):
        self.rhs, self.every_step, self.jumps = rhs, every_step, frozenset(jumps)
        self.func, self.dtype, self.device = rhs.func, rhs.dtype, rhs.device
        self.shifted: dict[float, Tensor] = {}  # the current step's shifted ends: asked-for time -> time used

    @property
    def calls(self) -> int:
        return self.rhs.calls

    def step(self, t0: float, t_end: float) -> None:
        """The next step runs from ``t0`` to ``t_end``; its stages are evaluated at ``t0 + c * (t_end - t0)``."""
        t1 = t0 + (t_end - t0)  # the time a stage with c = 1 asks for
        self.shifted = {}
        if self.every_step or t0 in self.jumps:
            self.shifted[t0] = self._inside(t0, t1)
        if self.every_step or t_end in self.jumps:
            self.shifted[t1] = self._inside(t1, t0)

    def _inside(self, t: float, toward: float) -> Tensor:
        here = torch.scalar_tensor(t, dtype=self.dtype, device=self.device)
        return torch.nextafter(here, torch.scalar_tensor(toward, dtype=self.dtype, device=self.device))

    def __call__(self, t: float | Tensor, y: Tensor) -> Tensor:
        if type(t) is float and t in self.shifted:
            return self.rhs(self.shifted[t], y)
        return self.rhs(t, y)


def check_derivative(f: Any, y: Tensor, t: float) -> None:
    """``func``'s value ``f`` at the initial ``(t, y)``, refused unless it is a finite tensor of ``y``'s shape
    and dtype."""
    if not isinstance(f, Tensor) or f.shape != y.shape or f.dtype != y.dtype:
        got = f"{tuple(f.shape)} {f.dtype}" if isinstance(f, Tensor) else type(f).__name__
        raise ValueError(
            f"func(t, y) must return a tensor of y's shape and dtype {tuple(y.shape)} {y.dtype}; got {got}"
        )
    if not math.isfinite(float(f.detach().abs().amax())):
        raise SolverError(f"the derivative func(t, y0) is not finite at the initial time t={t!r}", nonfinite=True)
