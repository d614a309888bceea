"""What a gradient mode needs to know about one ``odeint`` call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..solvers.control import Norm, rms_norm
from ..solvers.integrate import integrate
from ..solvers.options import SolverOptions
from ..solvers.per_sample import integrate_per_sample
from ..solvers.rhs import CountingRHS
from ..solvers.stats import SolveStats


@dataclass(frozen=True)
class ODEProblem:
    """``func``, the output times (floats), the validated forward options and the stats to fill."""

    func: Callable[[Tensor, Tensor], Tensor]
    times: list[float]
    options: SolverOptions
    stats: SolveStats

    def rhs(self, like: Tensor, func: Callable | None = None) -> CountingRHS:
        """A counting right-hand side of ``func`` (default: the problem's) with time in ``like``'s dtype."""
        return CountingRHS(func or self.func, like.dtype, like.device)

    def solve(self, y0: Tensor) -> Tensor:
        """The forward solve (shared or per-sample step control), counted in ``stats``: ``(len(times), *y0.shape)``."""
        rhs = self.rhs(y0)
        if self.options.per_sample:
            sol = integrate_per_sample(rhs, y0, self.times, self.options)
            self.stats.add_forward(rhs.calls, int(sol.accepted.max()), int(sol.rejected.max()))
            self.stats.sample_steps = sol.accepted.tolist()
        else:
            sol = integrate(rhs, y0, self.times, self.options, self.norm)
            self.stats.add_forward(rhs.calls, sol.accepted, sol.rejected)
        return torch.stack(sol.ys)

    @property
    def norm(self) -> Norm:
        """The forward error norm: RMS unless the user passed a callable."""
        return self.options.norm if callable(self.options.norm) else rms_norm
