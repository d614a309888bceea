"""Adaptive methods against SciPy's DOP853 at very tight tolerance, error measured in tolerance units."""

import numpy as np
import pytest
import torch

import noderun
from problems import PROBLEMS, numpy_rhs, reference_solution

# Global error may exceed the local tolerance a little; a few tens of units would signal a bug.
# fehlberg2's embedded first-order estimate is known to understate the error of the second-order
# solution it propagates, so its error runs at hundreds of tolerance units (torchdiffeq's method).
BOUND = {"fehlberg2": 2000.0}
TOLERANCES = {"adaptive_heun": (1e-4, 1e-6), "fehlberg2": (1e-4, 1e-6)}


def solve(name, method, tol, times):
    func, y0, _ = PROBLEMS[name]
    stats = noderun.SolveStats()
    ys = noderun.odeint(
        func,
        torch.tensor(y0, dtype=torch.float64),
        torch.from_numpy(times),
        method=method,
        rtol=tol,
        atol=tol,
        options={"max_num_steps": 100_000},
        stats=stats,
    )
    return ys, stats


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("method", noderun.ADAPTIVE)
def test_error_in_tolerance_units(problem, method):
    times = np.linspace(0.0, PROBLEMS[problem][2], 21)
    reference = reference_solution(problem, times)
    errors = []
    for tol in TOLERANCES.get(method, (1e-5, 1e-8)):
        ys, _ = solve(problem, method, tol, times)
        units = ((ys - reference).abs() / (tol + tol * reference.abs())).max().item()
        assert units <= BOUND.get(method, 50.0), f"{method} at tol {tol}: {units:.1f} tolerance units"
        errors.append((ys - reference).abs().max().item())
    assert errors[1] < errors[0] / 10, "a tighter tolerance must give a smaller error"


@pytest.mark.parametrize("problem", PROBLEMS)
def test_dopri5_costs_no_more_than_scipy_rk45(problem):
    from scipy.integrate import solve_ivp

    func, y0, end = PROBLEMS[problem]
    times = np.linspace(0.0, end, 21)
    scipy_sol = solve_ivp(numpy_rhs(func), (0.0, end), np.array(y0), method="RK45", t_eval=times, rtol=1e-6, atol=1e-6)
    _, stats = solve(problem, "dopri5", 1e-6, times)
    assert stats.nfe_forward <= 1.25 * scipy_sol.nfev


def test_output_times_do_not_force_steps():
    func, y0, end = PROBLEMS["van_der_pol"]
    _, few = solve("van_der_pol", "dopri5", 1e-6, np.array([0.0, end]))
    _, many = solve("van_der_pol", "dopri5", 1e-6, np.linspace(0.0, end, 200))
    assert many.steps_accepted == few.steps_accepted
    assert many.nfe_forward == few.nfe_forward
