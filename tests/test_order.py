"""Observed orders of convergence: of each method's solution, its error estimate and its dense output."""

import pytest
import torch

from noderun import SolveStats, odeint
from noderun.solvers.interpolate import dense_output, dense_stages
from noderun.solvers.methods import ADAPTIVE, FIXED_STEP, METHODS
from noderun.solvers.step import StageBuffer, error_estimate, rk_step
from problems import ROTATION, ROTATION_Y0, observed_order, rotation, rotation_exact

A, Y0, rhs, exact, slope = ROTATION, ROTATION_Y0, rotation, rotation_exact, observed_order


def steps_for(order):
    # Enough steps that the error is asymptotic, few enough that it stays above round-off.
    if order >= 8:
        return [8, 12, 16, 24, 32]
    return [32, 48, 64, 96] if order >= 5 else [32, 64, 128, 256]


@pytest.mark.parametrize("name", [*FIXED_STEP, *ADAPTIVE])  # the explicit tableaus (implicit: test_implicit.py)
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
        dense_stages(rhs, tableau, step)
        y_mid = dense_output(tableau, step, 0.37)
        errors.append((y_mid - exact(0.37 * h)).abs().max().item())
    assert slope(hs, errors) >= DENSE_ORDER[name] + 1 - 0.3


def test_dense_output_matches_step_end():
    for tableau in (METHODS[name] for name in ADAPTIVE):
        step = rk_step(rhs, tableau, 0.0, Y0, 0.1, None)
        dense_stages(rhs, tableau, step)
        end = dense_output(tableau, step, 1.0)
        assert torch.allclose(end, step.y1, atol=1e-13), tableau.name


@pytest.mark.parametrize("name", ADAPTIVE)
def test_stage_buffer_matches_stage_list(name):
    """A step's stages in the reused buffer (no graph) and in a list (autograd) give the same step."""
    tableau = METHODS[name]
    buffer = StageBuffer(tableau, Y0)
    for h in (0.3, 0.1):  # the second step overwrites the buffer the first used
        listed = rk_step(rhs, tableau, 0.0, Y0, h, None)
        buffered = rk_step(rhs, tableau, 0.0, Y0, h, None, buffer)
        torch.testing.assert_close(buffered.y1, listed.y1, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(
            error_estimate(tableau, buffered), error_estimate(tableau, listed), rtol=1e-9, atol=1e-13
        )  # the estimate cancels: rounding shows
        dense_stages(rhs, tableau, listed)
        dense_stages(rhs, tableau, buffered)
        torch.testing.assert_close(
            dense_output(tableau, buffered, 0.37), dense_output(tableau, listed, 0.37), rtol=1e-14, atol=1e-14
        )


@pytest.mark.parametrize("name", ["fehlberg2", "bosh3", "dopri5", "tsit5", "dopri8"])  # all reject steps here
def test_solves_with_and_without_a_graph_agree_through_rejections(name):
    """The no-graph loop (buffered stages, a rejected attempt's first stage reused) takes the same steps
    to the same states (up to rounding, which the stiff oscillators amplify)."""
    mu = torch.linspace(1.0, 30.0, 4, dtype=torch.float64)

    def van_der_pol(t, y):
        return torch.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], dim=1)

    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64).repeat(4, 1)
    times = torch.linspace(0.0, 3.0, 4, dtype=torch.float64)
    with_graph, without_graph = SolveStats(), SolveStats()
    ys = odeint(
        van_der_pol,
        y0.clone().requires_grad_(True),
        times,
        method=name,
        rtol=1e-6,
        atol=1e-6,
        stats=with_graph,
        options={"max_num_steps": 100_000},
    )
    with torch.no_grad():
        ys_no_graph = odeint(
            van_der_pol,
            y0,
            times,
            method=name,
            rtol=1e-6,
            atol=1e-6,
            stats=without_graph,
            options={"max_num_steps": 100_000},
        )
    assert with_graph.steps_rejected > 0
    assert without_graph == with_graph
    torch.testing.assert_close(ys_no_graph, ys.detach(), rtol=1e-6, atol=1e-6)
