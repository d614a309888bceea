"""``odeint_dense``: one adaptive solve from ``t0`` to ``t1`` kept as a continuous solution, evaluated at any
time inside by the method's own dense output."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor

from .solvers.clocks import StepRecord
from .solvers.integrate import integrate, retake
from .solvers.interpolate import dense_output
from .solvers.method import Adaptive, SolveMethod
from .solvers.options import SolverOptions
from .solvers.rhs import CountingRHS
from .solvers.settings import parsed
from .solvers.stats import SolveStats
from .solvers.step import Step


class DenseSolution:
    """The solution between ``t0`` and ``t1``: ``solution(t)`` for a time or a 1-D tensor of times inside
    (either order), shape ``(*t.shape, *y0.shape)``. Only each accepted step's start is kept; the first
    evaluation inside a step recomputes its stages (``stats.nfe_forward`` counts them), which are then kept."""

    def __init__(self, rhs: CountingRHS, opts: SolverOptions, steps: list[StepRecord], y1: Tensor, stats: SolveStats):
        self.rhs, self.opts, self.tableau, self.steps, self.y1, self.stats = rhs, opts, opts.tableau, steps, y1, stats
        self.t0, self.t1 = steps[0].t, steps[-1].t_end
        self.starts = [record.t for record in steps] if self.t1 > self.t0 else [-record.t for record in steps]
        self.computed: dict[int, Step] = {}

    def __call__(self, t: float | Tensor) -> Tensor:
        times = torch.as_tensor(t, dtype=torch.float64)
        values = [self._at(float(x)) for x in times.reshape(-1).tolist()]
        return torch.stack(values).reshape(*times.shape, *self.y1.shape)

    def _at(self, t: float) -> Tensor:
        low, high = sorted((self.t0, self.t1))
        if not low <= t <= high:
            raise ValueError(f"t={t!r} lies outside the solved interval [{low!r}, {high!r}]")
        if t == self.t1:
            return self.y1
        key = t if self.t1 > self.t0 else -t
        index = max(0, bisect.bisect_right(self.starts, key) - 1)
        step = self._step(index)
        # odeint_dense admits only adaptive explicit tableaus and ImplicitTableau, with their dense coefficients
        return dense_output(cast(Adaptive, self.tableau), step, (t - step.t) / step.h)

    def _step(self, index: int) -> Step:
        if index not in self.computed:
            calls = self.rhs.calls
            self.computed[index] = retake(self.rhs, self.opts, self.steps[index], dense=True)
            self.stats.add_forward(self.rhs.calls - calls)
        return self.computed[index]


def odeint_dense(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t0: float | Tensor,
    t1: float | Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str = "dopri5",
    options: Mapping[str, Any] | None = None,
    stats: SolveStats | None = None,
) -> DenseSolution:
    """Solve ``dy/dt = func(t, y)`` from ``y(t0) = y0`` to ``t1`` by an adaptive ``method``; return the
    solution as a function of time (``DenseSolution``). Gradients flow through it as under ``grad="backprop"``."""
    settings = parsed(method, rtol, atol, options, "backprop")
    tableau, opts = settings.forward.tableau, settings.forward
    if isinstance(tableau, SolveMethod) or not tableau.adaptive or opts.per_sample:
        raise ValueError(
            f"odeint_dense needs an adaptive Runge–Kutta method (explicit or implicit) with one step "
            f"size (its dense output); got method={method!r}"
            f"{' with per_sample' if opts.per_sample else ''}"
        )
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise ValueError("odeint_dense takes y0 as one floating-point tensor")
    times = [float(t0), float(t1)]
    if times[0] == times[1]:
        raise ValueError(f"odeint_dense needs t0 != t1, got {times[0]!r} twice")
    stats = stats if stats is not None else SolveStats()
    rhs = CountingRHS(func, y0.dtype, y0.device)
    sol = integrate(rhs, y0, times, opts, record=True)
    stats.add_forward(rhs.calls, sol.accepted, sol.rejected, sol.work)
    return DenseSolution(rhs, opts, sol.steps, sol.ys[-1], stats)
