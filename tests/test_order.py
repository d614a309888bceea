"""Observed orders of convergence: of each method's solution, its error estimate and its dense output."""
import numpy as np
import pytest
import torch

from noderun.solvers.interpolate import dense_output, dense_stages
from noderun.solvers.methods import ADAPTIVE, METHODS
from noderun.solvers.step import error_estimate, rk_step

# y' = A y with a known exact solution: a damped rotation, time-dependent through nothing but y.
A = torch.tensor([[-0.3, 2.0], [-2.0, -0.3]], dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)


def rhs(t, y):
    return A @ y


def exact(t):
    return torch.linalg.matrix_exp(A * t) @ Y0


def slope(hs, errors):
    hs, errors = np.asarray(hs), np.asarray(errors)
    keep = errors > 1e-13  # stay clear of round-off
    return np.polyfit(np.log(hs[keep]), np.log(errors[keep]), 1)[0]


def steps_for(order):
    # Enough steps that the error is asymptotic, few enough that it stays above round-off.
    if order >= 8:
        return [8, 12, 16, 24, 32]
    return [32, 48, 64, 96] if order >= 5 else [32, 64, 128, 256]


@pytest.mark.parametrize("name", METHODS)
def test_global_order(name):
    tableau, T = METHODS[name], 2.0
    hs, errors = [], []
    for n in steps_for(tableau.order):
        h, y = T / n, Y0
        for i in range(n):
            y = rk_step(rhs, tableau, i * h, y, h, None).y1
        hs.append(h)
        errors.append((y - exact(T)).abs().max().item())
    assert abs(slope(hs, errors) - tableau.order) <= 0.3


@pytest.mark.parametrize("name", ADAPTIVE)
def test_error_estimate_order(name):
    """The embedded estimate is the local error of an order-``error_order`` method: O(h^(q+1))."""
    tableau = METHODS[name]
    hs = [0.2 / 2**i for i in range(4)]
    estimates = [error_estimate(tableau, rk_step(rhs, tableau, 0.0, Y0, h, None)).abs().max().item() for h in hs]
    assert abs(slope(hs, estimates) - (tableau.error_order + 1)) <= 0.3


# Order of each continuous extension: Hermite for the second-order pairs, the methods' own otherwise.
DENSE_ORDER = {"adaptive_heun": 2, "fehlberg2": 2, "bosh3": 3, "dopri5": 4, "tsit5": 4, "dopri8": 7}


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_order(name):
    """Mid-step dense output has local error O(h^(p+1)) for its interpolation order p."""
    tableau = METHODS[name]
    largest = 0.8 if name == "dopri8" else 0.4
    hs = [largest / 2**i for i in range(4)]
    errors = []
    for h in hs:
        step = rk_step(rhs, tableau, 0.0, Y0, h, None)
        y_mid = dense_output(tableau, step, dense_stages(rhs, tableau, step), 0.37)
        errors.append((y_mid - exact(0.37 * h)).abs().max().item())
    assert slope(hs, errors) >= DENSE_ORDER[name] + 1 - 0.3


def test_dense_output_matches_step_end():
    for tableau in (METHODS[name] for name in ADAPTIVE):
        step = rk_step(rhs, tableau, 0.0, Y0, 0.1, None)
        end = dense_output(tableau, step, dense_stages(rhs, tableau, step), 1.0)
        assert torch.allclose(end, step.y1, atol=1e-13), tableau.name
