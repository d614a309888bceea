"""The Adams methods: their variable-step weights, observed orders, the corrector, options and gradients."""

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from noderun import SettingError, SolverSettings, SolveStats, odeint
from noderun.solvers.adams import MAX_ORDER, lagrange_integrals
from noderun.solvers.methods import METHODS
from noderun.solvers.options import parse_options
from problems import ROTATION, ROTATION_Y0, observed_order, rotation, rotation_exact

D = torch.float64
A, Y0, rhs, exact = ROTATION, ROTATION_Y0, rotation, rotation_exact
TIGHT = {"rtol": 1e-13, "atol": 1e-15}  # the corrector iterates to rounding


def slope(hs, errors):
    return observed_order(hs, errors, floor=1e-12)


def classical(order, implicit):
    """The classical coefficients from the backward-difference form (Hairer, Nørsett & Wanner, *Solving ODEs I*,
    III.1): ``gamma_j`` with ``sum_i gamma_i / (j + 1 - i) = 1`` (Adams–Bashforth) or ``= 0`` for ``j >= 1``
    (Adams–Moulton), then the weight of ``f_{n-l}`` (``f_{n+1-l}``) is ``(-1)^l sum_{j>=l} gamma_j C(j, l)``."""
    gamma = []
    for j in range(order):
        rest = sum(g / (j + 1 - i) for i, g in enumerate(gamma))
        gamma.append((Fraction(0) if implicit and j > 0 else Fraction(1)) - rest)
    return [(-1) ** k * sum(gamma[j] * math.comb(j, k) for j in range(k, order)) for k in range(order)]


@pytest.mark.parametrize("order", range(1, MAX_ORDER + 1))
def test_uniform_grid_weights_are_the_classical_coefficients(order):
    bashforth = lagrange_integrals([-float(j) for j in range(order)])
    moulton = lagrange_integrals([1.0 - j for j in range(order)])
    np.testing.assert_allclose(bashforth, [float(c) for c in classical(order, implicit=False)], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(moulton, [float(c) for c in classical(order, implicit=True)], rtol=1e-11, atol=1e-12)


def test_the_published_fourth_order_rows():
    bashforth, moulton = np.array([55, -59, 37, -9]) / 24, np.array([9, 19, -5, 1]) / 24
    np.testing.assert_allclose(lagrange_integrals([0.0, -1.0, -2.0, -3.0]), bashforth, rtol=1e-14)
    np.testing.assert_allclose(lagrange_integrals([1.0, 0.0, -1.0, -2.0]), moulton, rtol=1e-14)


@pytest.mark.parametrize("count", [1, 2, 5, 9, 13])
def test_uneven_weights_integrate_every_polynomial_of_their_degree(count):
    rng = np.random.default_rng(count)
    nodes = np.concatenate([[1.0, 0.0], -np.cumsum(rng.uniform(0.3, 2.0, count))])[:count]
    weights = lagrange_integrals(list(nodes))
    for degree in range(count):
        terms = [w * x**degree for w, x in zip(weights, nodes)]
        # the sum cancels terms as large as the nodes' powers: its rounding grows with them
        assert abs(sum(terms) - 1.0 / (degree + 1)) <= 1e-13 * (1 + sum(map(abs, terms)))


def solve_error(method, n, times, max_order, **kwargs):
    span = abs(times[-1] - times[0])
    options = {"step_size": span / n, "max_order": max_order}
    if method == "implicit_adams":
        options["max_iters"] = 50
    t = torch.tensor(times, dtype=D)
    y_start = exact(times[0])
    ys = odeint(lambda s, y: A @ y, y_start, t, method=method, options=options, **TIGHT, **kwargs)
    return max((ys[i] - exact(s)).abs().max().item() for i, s in enumerate(times))


UNEVEN = [0.0, 0.13, 0.31, 0.62, 0.8, 1.37, 2.0]  # intervals split into steps of different sizes


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("max_order", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("times", [[0.0, 2.0], UNEVEN, [2.0, 0.0]], ids=["uniform", "uneven", "backwards"])
def test_global_order(method, max_order, times):
    ns = [32, 64, 128, 256]
    errors = [solve_error(method, n, times, max_order) for n in ns]
    assert abs(slope([1.0 / n for n in ns], errors) - max_order) <= 0.3


def test_the_default_is_fourth_order():
    ns = [32, 64, 128, 256]
    for method in ("explicit_adams", "implicit_adams"):
        errors = []
        for n in ns:
            t = torch.tensor(UNEVEN, dtype=D)
            options = {"step_size": 2.0 / n, **({"max_iters": 50} if method == "implicit_adams" else {})}
            ys = odeint(rhs, Y0, t, method=method, options=options, **TIGHT)
            errors.append((ys[-1] - exact(2.0)).abs().max().item())
        assert abs(slope([1.0 / n for n in ns], errors) - 4) <= 0.3, method


def test_the_corrector_beats_the_predictor_at_equal_order():
    explicit = solve_error("explicit_adams", 64, [0.0, 2.0], 4)
    implicit = solve_error("implicit_adams", 64, [0.0, 2.0], 4)
    assert implicit < explicit / 3


def test_a_converged_step_solves_the_corrector_equation():
    """After the start-up, ``y1 = y0 + h (w_0 f(t1, y1) + sum_j w_j f_j)`` with the Adams–Moulton weights."""
    method, h = METHODS["implicit_adams"], 0.1
    opts = parse_options(method, 1e-13, 1e-15, {"max_order": 4, "max_iters": 50})
    stepper = method.stepper(rhs, Y0, opts)
    ts, fs, y = [], [], Y0
    for n in range(5):
        ts.insert(0, n * h)
        fs.insert(0, rhs(n * h, y))
        step = stepper(n * h, y, h, None)
        y = step.y1
    weights = lagrange_integrals([(s - ts[0]) / h for s in [ts[0] + h] + ts[:3]])
    corrector = step.y0 + h * (weights[0] * rhs(ts[0] + h, y) + sum(w * f for w, f in zip(weights[1:], fs[:3])))
    torch.testing.assert_close(y, corrector, rtol=1e-14, atol=1e-14)
    predictor_only = step.y0 + h * sum(w * f for w, f in zip(lagrange_integrals([0.0, -1.0, -2.0]), fs[:3]))
    assert (predictor_only - y).abs().max() > 1e-8  # the corrector moved the state


def test_a_corrector_that_does_not_converge_warns_once_and_keeps_its_last_iterate():
    t = torch.tensor([0.0, 2.0], dtype=D)
    stats = SolveStats()
    with pytest.warns(RuntimeWarning, match=r"max_iters=1 evaluations at t=") as record:
        ys = odeint(
            rhs, Y0, t, method="implicit_adams", options={"step_size": 0.1, "max_iters": 1}, **TIGHT, stats=stats
        )
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert "step_size" in str(record[0].message) and "rtol/atol" in str(record[0].message)
    # 20 steps, each evaluating its start (the first given by the loop); 2 RK4 start-up steps evaluate 3 more
    # stages each, the other 18 one corrector iterate each
    assert stats.nfe_forward == 20 + 2 * 3 + 18
    error = (ys[-1] - exact(2.0)).abs().max().item()
    assert 0 < error < 1e-3  # predictor-corrector steps: still accurate, less than converged ones
    assert (
        error
        > (
            odeint(rhs, Y0, t, method="implicit_adams", options={"step_size": 0.1, "max_iters": 50}, **TIGHT)[-1]
            - exact(2.0)
        )
        .abs()
        .max()
        .item()
    )


def test_a_converging_corrector_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(
            rhs,
            Y0,
            torch.tensor([0.0, 1.0], dtype=D),
            method="implicit_adams",
            options={"step_size": 0.05},
            rtol=1e-6,
            atol=1e-8,
        )


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("value", [0, 13, -1, 2.5, True, "4", None])
def test_max_order_is_validated(method, value):
    with pytest.raises(SettingError, match=r"options\['max_order'\] must be an integer from 1 to 12") as error:
        odeint(rhs, Y0, torch.tensor([0.0, 1.0], dtype=D), method=method, options={"max_order": value})
    assert error.value.key == "max_order"


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "4", math.inf])
def test_max_iters_is_validated(value):
    with pytest.raises(SettingError, match=r"options\['max_iters'\] must be a positive integer") as error:
        odeint(rhs, Y0, torch.tensor([0.0, 1.0], dtype=D), method="implicit_adams", options={"max_iters": value})
    assert error.value.key == "max_iters"


def test_option_names_follow_the_caller():
    with pytest.raises(SettingError, match=r"solver\.max_iters must be a positive integer"):
        SolverSettings.from_config({"method": "implicit_adams", "step_size": 0.1, "max_iters": 0}, {"mode": "backprop"})
    with pytest.raises(SettingError, match=r"adjoint_options\['max_order'\]"):
        odeint(
            rhs,
            Y0,
            torch.tensor([0.0, 1.0], dtype=D),
            method="explicit_adams",
            grad="adjoint",
            adjoint_params=(),
            adjoint_options={"max_order": 20},
        )
    with pytest.raises(SettingError, match=r"unknown options key\(s\) \['max_iters'\].*'explicit_adams'"):
        odeint(rhs, Y0, torch.tensor([0.0, 1.0], dtype=D), method="explicit_adams", options={"max_iters": 3})


def test_the_extreme_orders_are_accepted():
    """Order 1 is Euler (explicit) or backward Euler (implicit); order 12 runs 11 start-up steps, then its formula
    (within its small stability region: |h * lambda| = 0.04 here)."""
    t = torch.tensor([0.0, 0.5], dtype=D)
    for method in ("explicit_adams", "implicit_adams"):
        errors = {}
        for max_order in (1, MAX_ORDER):
            ys = odeint(
                rhs,
                Y0,
                t,
                method=method,
                options={
                    "step_size": 0.02,
                    "max_order": max_order,
                    **({"max_iters": 50} if method == "implicit_adams" else {}),
                },
                **TIGHT,
            )
            errors[max_order] = (ys[-1] - exact(0.5)).abs().max().item()
        assert 1e-3 < errors[1] < 3e-2 and errors[MAX_ORDER] < 1e-10, (method, errors)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_checkpointing_is_refused(method):
    with pytest.raises(SettingError, match="carries a history from step to step") as error:
        odeint(rhs, Y0, torch.tensor([0.0, 1.0], dtype=D), method=method, grad="checkpoint", adjoint_params=())
    assert error.value.key == "grad"


class Dynamics(nn.Module):
    """Nonlinear and time-dependent, with parameters: ``W tanh(y) + b cos(t)``."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.tensor([[-0.5, 1.2], [-1.0, -0.2]], dtype=D))
        self.b = nn.Parameter(torch.tensor([0.3, -0.4], dtype=D))

    def forward(self, t, y):
        return torch.tanh(y) @ self.W.T + self.b * torch.cos(t)


def loss_of(func, y0, method, grad, options):
    t = torch.tensor(UNEVEN[:5], dtype=D)
    ys = odeint(func, y0, t, method=method, grad=grad, options=options, **TIGHT)
    return (ys * torch.linspace(0.5, 2.0, ys.numel(), dtype=D).view_as(ys)).sum()


def finite_difference(func, y0, method, options, tensor, eps=1e-6):
    grad = torch.zeros_like(tensor)
    with torch.no_grad():
        for i in range(tensor.numel()):
            flat = tensor.view(-1)
            flat[i] += eps
            up = loss_of(func, y0, method, "backprop", options)
            flat[i] -= 2 * eps
            down = loss_of(func, y0, method, "backprop", options)
            flat[i] += eps
            grad.view(-1)[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("grad", ["backprop", "adjoint"])
def test_gradients_match_finite_differences(method, grad):
    func, y0 = Dynamics(), torch.tensor([0.7, -0.3], dtype=D, requires_grad=True)
    options = {"step_size": 0.01, "max_iters": 50} if method == "implicit_adams" else {"step_size": 0.01}
    loss_of(func, y0, method, grad, options).backward()
    # backprop differentiates the discretisation exactly; the adjoint solves the continuous adjoint equation
    # with the same method and step, agreeing to the discretisation error
    tolerance = 1e-7 if grad == "backprop" else 1e-6
    for tensor in (y0, func.W, func.b):
        expected = finite_difference(func, y0.detach(), method, options, tensor.data)
        torch.testing.assert_close(tensor.grad, expected, rtol=tolerance, atol=tolerance)


def test_the_methods_are_registered_as_a_family():
    import subprocess
    import sys

    from noderun.solvers.methods import ADAMS, get_method

    assert list(ADAMS) == ["explicit_adams", "implicit_adams"]
    assert all(METHODS[name] is ADAMS[name] and get_method(name).multistep for name in ADAMS)
    with pytest.raises(ValueError, match="multistep explicit_adams, implicit_adams"):
        get_method("adams")
    listed = subprocess.run(
        [sys.executable, "-m", "noderun.cli", "methods"], capture_output=True, text=True, check=True
    ).stdout
    assert "multistep:  explicit_adams, implicit_adams" in listed
