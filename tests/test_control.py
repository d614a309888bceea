"""The step-size controller: integral control by default, Hairer's PI control with ``beta``."""

import pytest
import torch

import noderun
from noderun.solvers.control import PIController


def test_default_is_integral_control():
    controller = PIController(error_order=4)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(0.9 * 1e-3 ** -0.2)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(0.9 * 1e-3 ** -0.2)  # no memory


def test_beta_weighs_in_the_previous_ratio():
    controller = PIController(error_order=4, beta=0.04)
    first = controller.next_step(1.0, 1e-3, accepted=True)
    assert first == pytest.approx(0.9 * 1e-3 ** -0.17)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(first * 1e-3 ** 0.04)


def test_rejection_shrinks_and_growth_is_clipped():
    controller = PIController(error_order=4)
    assert controller.next_step(1.0, 5.0, accepted=False) == pytest.approx(0.9 * 5.0 ** -0.2)
    assert controller.next_step(1.0, 1e6, accepted=False) == pytest.approx(0.2)
    assert controller.next_step(1.0, 1e-12, accepted=True) == pytest.approx(10.0)
    assert controller.next_step(1.0, float("inf"), accepted=False) == pytest.approx(0.2)


def test_beta_option_reaches_the_solve():
    torch.manual_seed(0)
    func = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Softplus(), torch.nn.Linear(32, 4))
    y0, t = torch.randn(16, 4), torch.tensor([0.0, 10.0])
    steps = {}
    for beta in (0.0, 0.04):
        stats = noderun.SolveStats()
        with torch.no_grad():
            noderun.odeint(lambda t, y: func(y), y0, t, rtol=1e-6, atol=1e-6, options={"beta": beta}, stats=stats)
        steps[beta] = (stats.steps_accepted, stats.steps_rejected)
    assert steps[0.0] != steps[0.04]
