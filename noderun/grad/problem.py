"""What a gradient mode needs to know about one ``odeint`` call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..solvers.control import Norm, rms_norm
from ..solvers.options import SolverOptions
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

    @property
    def norm(self) -> Norm:
        """The forward error norm: RMS unless the user passed a callable."""
        return self.options.norm if callable(self.options.norm) else rms_norm
