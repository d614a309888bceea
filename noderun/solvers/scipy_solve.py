"""``scipy_solver``: the whole problem solved by ``scipy.integrate.solve_ivp`` (RK45, RK23, DOP853, Radau,
BDF or LSODA), to compare noderun's solvers against SciPy's.

The state is flattened into a float64 vector for SciPy; ``func`` still receives it in ``y0``'s dtype,
device and shape, and the states at the output times come back so. SciPy's solve records no autograd
graph: gradients come from ``grad="adjoint"``, whose backward solve is SciPy's again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import SolverError
from .clocks import Solution
from .method import SolveMethod
from .options import SettingError
from .rhs import check_derivative

if TYPE_CHECKING:
    from .options import Names, SolverOptions
    from .step import RHS

SCIPY_SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
DEFAULT_SOLVER = "LSODA"  # torchdiffeq's default
LSODA_ONLY = ("min_step",)  # solve_ivp's other solvers ignore it (with a warning)
NO_GRAPH_WARNING = (
    "method='scipy_solver' solves outside autograd: the solution has no graph, so no gradient reaches y0, t "
    "or func's parameters; use grad='adjoint' (odeint_adjoint) for gradients"
)


class ScipySolve(SolveMethod):
    """``scipy.integrate.solve_ivp`` as a noderun method. Options: ``solver`` (one of ``SCIPY_SOLVERS``,
    default LSODA), ``min_step`` (LSODA only; default 0), ``max_step`` (default infinity), ``first_step``
    (default: SciPy's choice) and ``norm``, accepted for torchdiffeq's sake and unused: SciPy's solvers
    measure the error with their own RMS norm. ``rtol`` and ``atol`` are SciPy's."""

    name = "scipy_solver"
    adaptive = True  # SciPy's solvers size their steps by rtol and atol
    option_keys = ("solver", "min_step", "max_step", "first_step", "norm")

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        """``solver`` (the other keys are checked as for every adaptive method); warns when ``min_step`` goes
        to a solver other than LSODA, which ignores it."""
        solver = options.get("solver", DEFAULT_SOLVER)
        if solver not in SCIPY_SOLVERS:
            raise SettingError(
                f"unknown {names('solver')} {solver!r}; SciPy's solvers: {', '.join(SCIPY_SOLVERS)}", "solver"
            )
        if options.get("min_step", 0.0) > 0 and solver != "LSODA":
            warnings.warn(
                f"{names('min_step')} applies to LSODA only; SciPy's {solver} ignores it", UserWarning, stacklevel=2
            )

    def solve(self, rhs: RHS, y0: Tensor, times: list[float], opts: SolverOptions) -> Solution:
        if len(times) == 1:
            return Solution(ys=[y0.detach()])
        settings = solver_settings(opts.method_options)
        func = NumpyRHS(rhs, y0)
        start = y0.detach().reshape(-1).to("cpu", torch.float64, copy=True).numpy()
        sol = _solve_ivp()(func, (times[0], times[-1]), start, t_eval=times, rtol=opts.rtol, atol=opts.atol, **settings)
        if func.wants_graph or (torch.is_grad_enabled() and y0.requires_grad):
            warnings.warn(NO_GRAPH_WARNING, UserWarning, stacklevel=2)
        _check_finished(sol, settings["method"], times, func.nonfinite)
        return Solution(ys=[y0.detach(), *states(sol.y[:, 1:], y0)])  # no graph, not even to y0


def _check_finished(sol: Any, solver: str, times: list[float], nonfinite: bool) -> None:
    """``SolverError`` when SciPy's solve failed (with its message) or returned non-finite states."""
    if not sol.success:
        cause = " func returned NaN or infinite values." if nonfinite else ""
        raise SolverError(
            f"SciPy's {solver} could not solve from t={times[0]!r} to t={times[-1]!r}: "
            f"{sol.message}{cause} Try a stiff solver (options['solver'] 'Radau', 'BDF' or 'LSODA') "
            "or looser rtol and atol, and check that func does not blow up",
            nonfinite=nonfinite,
        )
    if not np.isfinite(sol.y).all():
        raise SolverError(
            f"SciPy's {solver} returned NaN or infinite states between t={times[0]!r} and "
            f"t={times[-1]!r}: the model has diverged",
            nonfinite=True,
        )


def solver_settings(method_options: Mapping[str, Any]) -> dict[str, Any]:
    """``solve_ivp``'s keywords from the method's options: ``method`` and the step bounds the solver uses."""
    solver = method_options.get("solver", DEFAULT_SOLVER)
    keys = ("max_step", "first_step") + (LSODA_ONLY if solver == "LSODA" else ())
    bounds = {key: method_options[key] for key in keys if method_options.get(key) is not None}
    return {"method": solver, **bounds}


def states(columns: np.ndarray, like: Tensor) -> list[Tensor]:
    """SciPy's solution columns (one float64 vector per time) as tensors of ``like``'s dtype, device and shape."""
    flat = torch.from_numpy(np.ascontiguousarray(columns.T)).to(dtype=like.dtype, device=like.device)
    return list(flat.view(-1, *like.shape).unbind(0))


class NumpyRHS:
    """``rhs`` as SciPy calls it, on float64 vectors: the state goes to ``func`` in ``like``'s dtype, device
    and shape, without a graph. The first call also checks the derivative (shape, dtype, finite) and, when
    autograd is on, whether it would have had a graph (``wants_graph``: ``func``'s parameters require grad);
    ``nonfinite`` records whether any derivative was NaN or infinite."""

    def __init__(self, rhs: RHS | Callable[[float, Tensor], Tensor], like: Tensor):
        self.rhs, self.like = rhs, like
        self.first = True
        self.wants_graph = False
        self.nonfinite = False

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        state = torch.tensor(y, dtype=self.like.dtype, device=self.like.device).view(self.like.shape)
        first, self.first = self.first, False
        with torch.set_grad_enabled(first and torch.is_grad_enabled()):
            f = self.rhs(float(t), state)
        if first:
            self._check(f, float(t))
        derivative = f.detach().reshape(-1).to("cpu", torch.float64, copy=True).numpy()
        if not self.nonfinite and not np.isfinite(derivative).all():
            self.nonfinite = True
        return derivative

    def _check(self, f: Any, t: float) -> None:
        check_derivative(f, self.like, t)
        self.wants_graph = f.requires_grad


def _solve_ivp() -> Callable[..., Any]:
    try:
        from scipy.integrate import solve_ivp
    except ImportError:
        raise ImportError(
            "method='scipy_solver' needs SciPy: pip install scipy (or pip install 'noderun[scipy]')"
        ) from None
    return solve_ivp


SCIPY_SOLVER = ScipySolve()
