"""The stiff cases of ``noderun bench``, in float64: Van der Pol at mu = 1000 from (2, 0) over [0, 3000] and
Robertson's kinetics from (1, 0, 0) over [0, 1e5]. Each is solved by noderun's adaptive implicit methods,
by dopri5 within a step budget, and (when SciPy is installed) by ``solve_ivp``'s Radau and BDF at the
same tolerances: accepted and rejected steps, evaluations, Jacobians, the median time of the repeats, and
the largest error at the end time against SciPy's Radau at rtol 1e-10 (noderun's kvaerno5 without SciPy)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import SolverError
from ..odeint import odeint
from ..solvers.methods import STIFF
from ..solvers.stats import SolveStats
from .measure import RepeatedSolve, interleaved

SCIPY_METHODS = ("Radau", "BDF")
EXPLICIT = "dopri5"
EXPLICIT_BUDGET = 20_000  # dopri5's steps before its row reports that it did not finish
REFERENCE_RTOL = 1e-10


@dataclass
class StiffCase:
    name: str
    func: Callable[[Any, Tensor], Tensor]
    y0: Tensor
    t_end: float
    rtol: float
    atol: float


def van_der_pol_1000(t: Any, y: Tensor) -> Tensor:
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, 1000.0 * (1 - x**2) * v - x], dim=-1)


def robertson(t: Any, y: Tensor) -> Tensor:
    a, b, c = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b**2, 3e7 * b**2], dim=-1)


def stiff_van_der_pol_case(tiny: bool) -> StiffCase:
    return StiffCase(
        "stiff_van_der_pol",
        van_der_pol_1000,
        torch.tensor([2.0, 0.0], dtype=torch.float64),
        1.0 if tiny else 3000.0,
        1e-6,
        1e-6,
    )


def robertson_case(tiny: bool) -> StiffCase:
    return StiffCase(
        "robertson", robertson, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), 1.0 if tiny else 1e5, 1e-6, 1e-10
    )


STIFF_CASES = {"stiff_van_der_pol": stiff_van_der_pol_case, "robertson": robertson_case}


def has_scipy() -> bool:
    return importlib.util.find_spec("scipy") is not None


def scipy_solve(case: StiffCase, method: str, rtol: float, atol: float):
    from scipy.integrate import solve_ivp

    def numpy_rhs(t, y):
        return case.func(t, torch.from_numpy(y)).numpy()

    return solve_ivp(numpy_rhs, (0.0, case.t_end), case.y0.numpy(), method=method, rtol=rtol, atol=atol)


def reference_end(case: StiffCase) -> Tensor:
    """The state at the end time, at rtol 1e-10 (atol four orders below the case's)."""
    if has_scipy():
        solution = scipy_solve(case, "Radau", REFERENCE_RTOL, case.atol * 1e-4)
        return torch.from_numpy(solution.y[:, -1])
    t = torch.tensor([0.0, case.t_end], dtype=torch.float64)
    return odeint(
        case.func,
        case.y0,
        t,
        method="kvaerno5",
        rtol=REFERENCE_RTOL,
        atol=case.atol * 1e-4,
        options={"max_num_steps": 1_000_000},
    )[-1]


class StiffTrial(RepeatedSolve):
    """One method on one stiff case: a first solve gives the counts and the error (or the reason it did not
    finish, which leaves the row without times); ``time_once`` adds a timed repeat."""

    def __init__(self, case: StiffCase, library: str, method: str, reference: Tensor):
        self.run = self._noderun(case, method) if library == "noderun" else self._scipy(case, method)
        self.facts: dict[str, Any] = {}
        self.times: list[float] = []
        try:
            end = self.run()
        except SolverError as error:
            self.facts["note"] = f"did not finish: {str(error).split(';')[0]}"
            self.run = None
            return
        self.facts["error"] = (end - reference).abs().max().item()

    def _noderun(self, case: StiffCase, method: str) -> Callable[[], Tensor]:
        t = torch.tensor([0.0, case.t_end], dtype=torch.float64)
        budget = EXPLICIT_BUDGET if method == EXPLICIT else 1_000_000

        def run() -> Tensor:
            stats = SolveStats()
            with torch.no_grad():
                end = odeint(
                    case.func,
                    case.y0,
                    t,
                    method=method,
                    rtol=case.rtol,
                    atol=case.atol,
                    stats=stats,
                    options={"max_num_steps": budget},
                )[-1]
            self.facts.update(
                nfe=stats.nfe_forward,
                steps=stats.steps_accepted,
                rejected=stats.steps_rejected,
                jacobians=stats.jacobian_evaluations,
            )
            return end

        return run

    def _scipy(self, case: StiffCase, method: str) -> Callable[[], Tensor]:
        def run() -> Tensor:
            solution = scipy_solve(case, method, case.rtol, case.atol)
            if not solution.success:
                raise SolverError(solution.message)
            self.facts.update(nfe=solution.nfev, steps=len(solution.t) - 1, jacobians=solution.njev)
            return torch.from_numpy(solution.y[:, -1])

        return run


def stiff_runs() -> list[tuple[str, str]]:
    """``(library, method)`` of every solve of a stiff case."""
    return [("noderun", method) for method in (*STIFF, EXPLICIT)] + (
        [("scipy", method) for method in SCIPY_METHODS] if has_scipy() else []
    )


def run_stiff_case(case: StiffCase, repeats: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every method on ``case``, timed in interleaved rounds; one row each, ``pass`` ``forward:<method>``."""
    started = time.perf_counter()
    reference = reference_end(case)
    progress(f"{case.name}: reference solved ({time.perf_counter() - started:.1f} s)")
    runs = stiff_runs()
    trials = []
    for library, method in runs:
        started = time.perf_counter()
        trials.append(StiffTrial(case, library, method, reference))
        progress(f"{case.name}: {library} {method} solved ({time.perf_counter() - started:.1f} s)")
    return [
        {"case": case.name, "library": library, "pass": f"forward:{method}", **row}
        for (library, method), row in zip(runs, interleaved(trials, repeats))
    ]
