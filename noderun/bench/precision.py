"""Work-precision diagrams (``noderun bench --work-precision``): for each bench problem, every applicable
method across a ladder of tolerances (fixed-step methods across step sizes), solved in float64 by noderun
and, where installed, torchdiffeq and SciPy's ``solve_ivp``: the largest error over the output times
against a tight reference, the median wall time of interleaved repeats, and the evaluations. One CSV row
per (problem, library, method, setting); one PNG per problem with error against time and against NFE.
Tolerances are ``rtol``, with ``atol`` in the bench case's own ratio to it (Robertson: 1e-4 × rtol).

Non-stiff problems (the bench's ``mlp``, ``van_der_pol``, ``mixed_scales``, ``latent_ode``, ``cnf``) take the
explicit methods; the stiff ones (``stiff_van_der_pol``, ``robertson``) the adaptive implicit methods and
SciPy's stiff solvers. (The ODE-Net block is left out: its solves at tight tolerances take minutes each.)"""

from __future__ import annotations

import copy
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from ..errors import SolverError
from ..log.files import write_csv
from ..log.progress import WorkProgress
from ..odeint import odeint
from .cases import build_cases
from .measure import Counted, RepeatedSolve
from .stiff import STIFF_CASES, has_scipy

TOLERANCES = tuple(10.0**-k for k in range(3, 11))  # 1e-3 ... 1e-10
STIFF_TOLERANCES = tuple(10.0**-k for k in range(3, 9))  # 1e-3 ... 1e-8
STEP_COUNTS = (10, 30, 100, 300, 1000)  # fixed-step methods: steps over the whole time span
EXPLICIT = {
    "noderun": ("bosh3", "dopri5", "tsit5", "dopri8"),
    "torchdiffeq": ("bosh3", "dopri5", "dopri8"),
    "scipy": ("RK45", "DOP853", "LSODA"),
}
FIXED = {"noderun": ("euler", "midpoint", "rk4"), "torchdiffeq": ("euler", "midpoint", "rk4")}
STIFF = {"noderun": ("kvaerno3", "kvaerno5", "radau5"), "scipy": ("Radau", "BDF", "LSODA")}
PROBLEMS = ("mlp", "van_der_pol", "mixed_scales", "latent_ode", "cnf", "stiff_van_der_pol", "robertson")
COLUMNS = ("problem", "library", "method", "tolerance", "steps_fixed", "error", "time_s", "nfe", "note")
BUDGET = 200_000  # steps before a solve is reported as not finished


@dataclass
class Problem:
    """A bench problem in float64: ``func(t, y)`` on a state of any shape, its start and output times;
    solved at ``rtol = tolerance`` and ``atol = atol_ratio × tolerance`` (the bench case's own ratio)."""

    name: str
    func: Callable[[Any, Tensor], Tensor]
    y0: Tensor
    t: Tensor
    stiff: bool
    atol_ratio: float = 1.0


def load_problem(name: str, tiny: bool) -> Problem:
    if name in STIFF_CASES:
        case = STIFF_CASES[name](tiny)
        return Problem(
            name, case.func, case.y0, torch.tensor([0.0, case.t_end], dtype=torch.float64), True, case.atol / case.rtol
        )
    if name not in PROBLEMS:
        raise ValueError(f"unknown work-precision problem {name!r}; valid: {', '.join(PROBLEMS)}")
    case = build_cases([name], tiny)[0]
    return Problem(name, copy.deepcopy(case.func).double(), case.y0.double(), case.t.double(), False)


def reference(problem: Problem) -> Tensor:
    """The solution at every output time at tolerance 1e-12 (two orders below the tightest non-stiff tolerance,
    four below the stiff ones): dopri8 for a non-stiff problem, SciPy's Radau (noderun's radau5 without SciPy)
    for a stiff one. Errors near 1e-12 are not resolved, and the method that solved the reference is
    favoured there."""
    tolerance = 1e-12
    if problem.stiff and has_scipy():
        return scipy_solution(problem, "Radau", tolerance)[0]
    method = "radau5" if problem.stiff else "dopri8"
    with torch.no_grad():
        return odeint(
            problem.func,
            problem.y0,
            problem.t,
            method=method,
            rtol=tolerance,
            atol=tolerance * problem.atol_ratio,
            options={"max_num_steps": 10 * BUDGET},
        )


def has_torchdiffeq() -> bool:
    return importlib.util.find_spec("torchdiffeq") is not None


def scipy_solution(problem: Problem, method: str, tolerance: float) -> tuple[Tensor, int]:
    """SciPy's ``solve_ivp`` on the flattened state: the solution at the output times and its evaluations
    (those of its finite-difference Jacobians included)."""
    from scipy.integrate import solve_ivp

    shape = problem.y0.shape
    times = problem.t.numpy()

    def numpy_rhs(t, y):
        with torch.no_grad():
            return (
                problem.func(torch.tensor(t, dtype=torch.float64), torch.from_numpy(y).reshape(shape))
                .reshape(-1)
                .numpy()
            )

    solution = solve_ivp(
        numpy_rhs,
        (times[0], times[-1]),
        problem.y0.reshape(-1).numpy(),
        method=method,
        t_eval=times,
        rtol=tolerance,
        atol=tolerance * problem.atol_ratio,
    )
    if not solution.success:
        raise SolverError(solution.message)
    return torch.from_numpy(solution.y.T.copy()).reshape(len(times), *shape), solution.nfev


class PrecisionTrial(RepeatedSolve):
    """One (library, method, setting) on a problem: a first solve gives the error and the evaluations, or the
    reason it did not finish (the row then has no time); ``time_once`` adds a timed repeat."""

    def __init__(
        self, problem: Problem, library: str, method: str, tolerance: float | None, steps: int | None, exact: Tensor
    ):
        self.facts: dict[str, Any] = {
            "problem": problem.name,
            "library": library,
            "method": method,
            "tolerance": tolerance,
            "steps_fixed": steps,
        }
        self.run = self._solver(problem, library, method, tolerance, steps)
        self.times: list[float] = []
        try:
            solution, nfe = self.run()
        except (SolverError, RuntimeError, AssertionError) as error:  # torchdiffeq asserts on a step underflow
            self.facts["note"] = f"did not finish: {str(error).splitlines()[0][:120]}"
            self.run = None
            return
        error = (solution - exact).abs().max().item()
        if not math.isfinite(error):
            self.facts["note"] = "diverged: the solution is not finite"
            self.run = None
            return
        self.facts.update(error=error, nfe=nfe)

    @staticmethod
    def _solver(
        problem: Problem, library: str, method: str, tolerance: float | None, steps: int | None
    ) -> Callable[[], tuple[Tensor, int]]:
        if library == "scipy":
            assert tolerance is not None  # settings() gives every SciPy solve a tolerance
            return lambda: scipy_solution(problem, method, tolerance)
        func = Counted(problem.func) if isinstance(problem.func, torch.nn.Module) else CountedFunction(problem.func)
        span = abs(float(problem.t[-1] - problem.t[0]))  # a step size is positive in either direction
        if steps is not None:
            keywords: dict[str, Any] = {"options": {"step_size": span / steps}}
        else:
            assert tolerance is not None  # settings() gives every adaptive solve a tolerance
            keywords = {"rtol": tolerance, "atol": tolerance * problem.atol_ratio}
        if library == "noderun":
            if steps is None:
                keywords["options"] = {"max_num_steps": BUDGET}
            solve: Callable[..., Tensor] = odeint
        else:
            import torchdiffeq  # pyright: ignore[reportMissingImports]  # optional: the bench extra

            solve = cast(Callable[..., Tensor], torchdiffeq.odeint)  # its return type is inferred, not declared

        def run() -> tuple[Tensor, int]:
            func.calls = 0
            with torch.no_grad():
                solution = solve(func, problem.y0, problem.t, method=method, **keywords)
            return solution, func.calls

        return run


class CountedFunction:
    """A plain function with a count of its calls (``Counted`` wraps modules)."""

    def __init__(self, func: Callable[[Any, Tensor], Tensor]):
        self.func, self.calls = func, 0

    def __call__(self, t: Any, y: Tensor) -> Tensor:
        self.calls += 1
        return self.func(t, y)


def settings(problem: Problem, tolerances: tuple[float, ...] | None) -> list[tuple[str, str, float | None, int | None]]:
    """``(library, method, tolerance, steps)`` for every solve of ``problem`` that the installed libraries allow."""
    available = {"noderun": True, "torchdiffeq": has_torchdiffeq(), "scipy": has_scipy()}
    ladder = tolerances or (STIFF_TOLERANCES if problem.stiff else TOLERANCES)
    adaptive = STIFF if problem.stiff else EXPLICIT
    runs: list[tuple[str, str, float | None, int | None]] = [
        (library, method, tolerance, None)
        for library, methods in adaptive.items()
        if available[library]
        for method in methods
        for tolerance in ladder
    ]
    if not problem.stiff:
        runs += [
            (library, method, None, steps)
            for library, methods in FIXED.items()
            if available[library]
            for method in methods
            for steps in STEP_COUNTS
        ]
    return runs


def work_precision(
    names: list[str] | None = None,
    repeats: int = 3,
    threads: int = 1,
    tiny: bool = False,
    out: str | Path = "outputs/work_precision",
    tolerances: tuple[float, ...] | None = None,
) -> list[dict[str, Any]]:
    """Every problem of ``names`` (default: all of ``PROBLEMS``): its rows, ``work_precision.csv`` (written again
    after each problem, so that a later failure loses nothing measured) and one ``<problem>.png`` in ``out``."""
    if repeats < 1 or threads < 1:
        raise ValueError("bench --work-precision needs --repeats and --threads of at least 1")
    problems = [load_problem(name, tiny) for name in (names or PROBLEMS)]
    torch.set_num_threads(threads)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = {problem.name: settings(problem, tolerances) for problem in problems}
    rows: list[dict[str, Any]] = []
    with WorkProgress("work-precision", sum(map(len, plan.values())) + len(problems)) as progress:
        for problem in problems:
            exact = reference(problem)
            progress.advance(f"{problem.name}: reference solved")
            trials = []
            for library, method, tolerance, steps in plan[problem.name]:
                trials.append(PrecisionTrial(problem, library, method, tolerance, steps, exact))
                setting = f"tol {tolerance:g}" if steps is None else f"{steps} steps"
                progress.advance(f"{problem.name}: {library} {method} {setting}")
            for _ in range(repeats):
                for trial in trials:
                    trial.time_once()
            problem_rows = [trial.row() for trial in trials]
            plot(problem.name, problem_rows, out_dir / f"{problem.name}.png")
            rows += problem_rows
            write_csv(out_dir / "work_precision.csv", [{key: row.get(key) for key in COLUMNS} for row in rows])
    return rows


def plot(name: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Error against time and against NFE, log-log, one line per (library, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_nfe) = plt.subplots(1, 2, figsize=(13, 6))
    styles = {"noderun": "-", "torchdiffeq": "--", "scipy": ":"}
    markers = {"noderun": "o", "torchdiffeq": "s", "scipy": "^"}
    lines = {}
    for row in rows:
        if row.get("error") is not None and row.get("time_s") is not None:
            lines.setdefault((row["library"], row["method"]), []).append(row)
    colors = {method: f"C{i % 10}" for i, method in enumerate(dict.fromkeys(m.lower() for _, m in lines))}
    for (library, method), points in lines.items():
        errors = [max(point["error"], 1e-17) for point in points]
        style = dict(
            linestyle=styles[library],
            marker=markers[library],
            color=colors[method.lower()],
            label=f"{library} {method}",
            markersize=4,
        )
        by_time.loglog([point["time_s"] for point in points], errors, **style)
        by_nfe.loglog([point["nfe"] for point in points], errors, **style)
    by_time.set(
        xlabel="wall time (s, median of repeats)",
        ylabel="largest error at the output times",
        title=f"{name}: error against time",
    )
    by_nfe.set(
        xlabel="function evaluations", ylabel="largest error at the output times", title=f"{name}: error against NFE"
    )
    for axes in (by_time, by_nfe):
        axes.grid(True, which="major", alpha=0.3)
    handles, labels = by_nfe.get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, ncol=6, loc="lower center", frameon=False)
    figure.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 6), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
