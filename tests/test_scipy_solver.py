"""method="scipy_solver": SciPy's solve_ivp solving the whole problem, its options, its failures and its
gradients (the adjoint only)."""

import math
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import noderun
from conftest import compose_config
from noderun import SettingError, SolverError, SolverSettings, odeint
from noderun.solvers import scipy_solve
from noderun.solvers.methods import get_method
from noderun.solvers.scipy_solve import SCIPY_SOLVERS, solver_settings

# y' = A y: a damped rotation, exact by the matrix exponential.
A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)


def rotation(t, y):
    return y @ A.to(y.dtype).T


def exact(y0, times):
    """``y(t) = expm(A (t - t0)) y0`` for each row of ``y0``, at every time."""
    return torch.stack([y0.double() @ torch.linalg.matrix_exp(A * (t - times[0])).T for t in times.tolist()])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("solver", SCIPY_SOLVERS)
def test_each_solver_matches_the_exact_solution(solver, dtype, reverse):
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]], dtype=dtype)
    times = torch.linspace(0.0, 2.0, 5, dtype=dtype)
    times = times.flip(0) if reverse else times
    tolerances = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-8}
    ys = odeint(rotation, y0, times, method="scipy_solver", options={"solver": solver}, **tolerances)
    assert ys.shape == (5, 3, 2) and ys.dtype == dtype and ys.device == y0.device
    assert torch.equal(ys[0], y0)
    error = (ys.double() - exact(y0, times.double())).abs().max().item()
    assert error < (1e-7 if dtype == torch.float64 else 1e-4)


def test_a_tuple_state_is_solved_tensor_by_tensor():
    y, z = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float32)
    times = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    ys, zs = odeint(
        lambda t, state: (-state[0], 2 * state[1]),
        (y, z),
        times,
        method="scipy_solver",
        rtol=1e-10,
        atol=1e-12,
        options={"solver": "DOP853"},
    )
    assert ys.shape == (4, 2) and ys.dtype == torch.float64 and zs.shape == (4, 1, 1) and zs.dtype == torch.float32
    torch.testing.assert_close(ys, y * torch.exp(-times)[:, None], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(zs, z * torch.exp(2 * times).float()[:, None, None], rtol=1e-6, atol=1e-6)


def test_every_evaluation_is_counted():
    calls = []

    def func(t, y):
        calls.append(float(t))
        return rotation(t, y)

    stats = noderun.SolveStats()
    odeint(
        func,
        torch.ones(2, dtype=torch.float64),
        torch.linspace(0, 3, 4),
        method="scipy_solver",
        options={"solver": "Radau"},
        stats=stats,
    )
    assert stats.nfe_forward == len(calls) > 0


@pytest.mark.parametrize("solver", SCIPY_SOLVERS)
def test_adjoint_gradients_match_dopri5_backprop(solver):
    func = Net().double()
    y0 = torch.tensor([[0.5, -1.0], [1.0, 0.3]], dtype=torch.float64, requires_grad=True)
    times = torch.linspace(0.0, 1.5, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 2, 2, dtype=torch.float64)

    def gradients(**kwargs):
        ys = odeint(func, y0, times, rtol=1e-10, atol=1e-12, **kwargs)
        return torch.autograd.grad((ys * weights).sum(), (y0, times, *func.parameters()))

    stats = noderun.SolveStats()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning that the gradient is missing
        adjoint = gradients(method="scipy_solver", options={"solver": solver}, grad="adjoint", stats=stats)
    backprop = gradients(method="dopri5")
    assert stats.nfe_backward > 0
    for got, expected in zip(adjoint, backprop):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_the_adjoint_solves_backward_with_scipy_and_the_forward_options():
    settings = SolverSettings(method="scipy_solver", options={"solver": "BDF", "max_step": 0.5}, grad="adjoint")
    assert settings.backward.tableau is get_method("scipy_solver")
    assert settings.backward.method_options == {"solver": "BDF", "max_step": 0.5}


def test_backprop_warns_that_the_solution_has_no_graph():
    times = torch.linspace(0.0, 1.0, 3)
    y0 = torch.tensor([1.0, 0.0], requires_grad=True)
    with pytest.warns(UserWarning, match="grad='adjoint'"):
        ys = odeint(rotation, y0, times, method="scipy_solver")
    assert not ys.requires_grad
    with pytest.warns(UserWarning, match="no gradient reaches y0, t or func's parameters"):
        odeint(Net(), y0.detach(), times, method="scipy_solver")  # the parameters require grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            odeint(Net(), y0, times, method="scipy_solver")
        odeint(rotation, y0.detach(), times, method="scipy_solver")  # nothing to differentiate


def test_checkpoint_is_refused_pointing_to_the_adjoint():
    with pytest.raises(
        SettingError, match=r"grad='checkpoint'.*'scipy_solver' solves the whole problem.*'adjoint'"
    ) as info:
        odeint(Net(), torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver", grad="checkpoint")
    assert info.value.key == "grad"


@pytest.mark.parametrize(
    "options, key, message",
    [
        (
            {"solver": "RK99"},
            "solver",
            r"unknown options\['solver'\] 'RK99'; SciPy's solvers: RK45, RK23, DOP853, "
            r"Radau, BDF, LSODA",
        ),
        (
            {"max_step": -1.0},
            "max_step",
            r"options\['max_step'\] must be a positive number \(inf: no bound\), got -1.0",
        ),
        ({"max_step": 0}, "max_step", r"options\['max_step'\] must be a positive number"),
        ({"min_step": -0.1}, "min_step", r"options\['min_step'\] must be a finite number of at least 0"),
        ({"min_step": math.inf}, "min_step", r"options\['min_step'\] must be a finite number"),
        ({"first_step": 0.0}, "first_step", r"options\['first_step'\] must be a finite positive number"),
        ({"norm": "l2"}, "norm", r"unknown norm options\['norm'\]='l2'"),
        (
            {"step_size": 0.1},
            None,
            r"unknown options key\(s\) \['step_size'\] for the method 'scipy_solver'; accepted "
            r"keys: solver, min_step, max_step, first_step, norm",
        ),
        ({"per_sample": True}, None, r"unknown options key\(s\) \['per_sample'\]"),
    ],
)
def test_bad_options_are_refused_naming_the_key(options, key, message):
    with pytest.raises(SettingError, match=message) as info:
        odeint(rotation, torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver", options=options)
    assert info.value.key == key


def test_an_unknown_method_lists_the_scipy_family():
    with pytest.raises(ValueError, match=r"SciPy scipy_solver"):
        get_method("scipy")


def test_step_bounds_reach_scipy():
    times = torch.linspace(0.0, 10.0, 3, dtype=torch.float64)
    y0 = torch.ones(2, dtype=torch.float64)

    def nfe(options):
        stats = noderun.SolveStats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LSODA warns of its convergence under a large min_step
            odeint(rotation, y0, times, method="scipy_solver", options=options, stats=stats)
        return stats.nfe_forward

    assert nfe({"solver": "RK45", "max_step": 0.01}) >= 1000 * 6 > nfe({"solver": "RK45"})
    assert nfe({"solver": "RK45", "first_step": 1e-6}) > nfe({"solver": "RK45"})


def test_min_step_goes_to_lsoda_only():
    assert solver_settings({"solver": "LSODA", "min_step": 2.0}) == {"method": "LSODA", "min_step": 2.0}
    assert solver_settings({"solver": "BDF", "min_step": 2.0, "max_step": 1.0}) == {"method": "BDF", "max_step": 1.0}
    assert solver_settings({}) == {"method": "LSODA"}  # torchdiffeq's default solver
    with pytest.warns(UserWarning, match=r"options\['min_step'\] applies to LSODA only; SciPy's RK45 ignores it"):
        SolverSettings(method="scipy_solver", options={"solver": "RK45", "min_step": 0.1}, grad="backprop")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SciPy warns of arguments a solver ignores: none is passed
        for solver in SCIPY_SOLVERS:
            odeint(
                rotation,
                torch.ones(2),
                torch.linspace(0, 1, 3),
                method="scipy_solver",
                options={"solver": solver, "min_step": 0.0, "max_step": 1.0, "first_step": 0.01},
            )


def test_a_solve_scipy_cannot_finish_raises_solver_error():
    blow_up = lambda t, y: y**2  # noqa: E731  (y = 1 / (1 - t) from y(0) = 1: infinite at t = 1)
    with pytest.raises(SolverError, match=r"SciPy's RK45 could not solve from t=0.0 to t=2.0: .*Try a stiff solver"):
        odeint(
            blow_up,
            torch.ones(1, dtype=torch.float64),
            torch.tensor([0.0, 2.0]),
            method="scipy_solver",
            options={"solver": "RK45"},
        )


def test_a_nan_derivative_raises_solver_error():
    nan_later = lambda t, y: torch.where(t < 0.5, -y, torch.full_like(y, math.nan))  # noqa: E731
    with pytest.raises(SolverError, match="func returned NaN or infinite values") as info:
        odeint(nan_later, torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver", options={"solver": "RK23"})
    assert info.value.nonfinite
    with pytest.raises(SolverError, match=r"not finite at the initial time t=0.0") as info:
        odeint(lambda t, y: y * math.nan, torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver")
    assert info.value.nonfinite


def test_non_finite_states_from_a_finished_solve_raise_solver_error(monkeypatch):
    finished = SimpleNamespace(success=True, message="", y=np.array([[1.0, math.inf], [1.0, 0.0]]))
    monkeypatch.setattr(scipy_solve, "_solve_ivp", lambda: lambda *args, **kwargs: finished)
    with pytest.raises(SolverError, match=r"returned NaN or infinite states between t=0.0 and t=1.0") as info:
        odeint(rotation, torch.ones(2), torch.linspace(0, 1, 2), method="scipy_solver")
    assert info.value.nonfinite


def test_a_derivative_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"func\(t, y\) must return a tensor of y's shape and dtype \(2,\)"):
        odeint(lambda t, y: y[:1], torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver")


def test_without_scipy_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.integrate", None)  # import scipy.integrate now fails
    with pytest.raises(ImportError, match=r"needs SciPy: pip install scipy"):
        odeint(rotation, torch.ones(2), torch.linspace(0, 1, 3), method="scipy_solver")


def test_the_config_names_the_scipy_solver_scipy_method():
    cfg = compose_config("solver=scipy_solver", "solver.scipy_method=Radau", "solver.max_step=0.5", "grad=adjoint")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert settings.forward.method_options == {"solver": "Radau", "max_step": 0.5}
    assert settings.backward.method_options == {"solver": "Radau", "max_step": 0.5}
    cfg = compose_config("solver=scipy_solver", "solver.scipy_method=RK99")
    with pytest.raises(SettingError, match=r"unknown solver.scipy_method 'RK99'; SciPy's solvers: RK45"):
        SolverSettings.from_config(cfg.solver, cfg.grad)
    cfg = compose_config("solver=scipy_solver", "solver.max_step=-1")
    with pytest.raises(SettingError, match=r"solver.max_step must be a positive number"):
        SolverSettings.from_config(cfg.solver, cfg.grad)


def test_grad_seminorm_is_accepted_in_a_config():
    cfg = compose_config("solver=scipy_solver", "grad.seminorm=true")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert settings.backward.method_options["solver"] == "RK45"
