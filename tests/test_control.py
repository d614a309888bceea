"""The step-size controller: integral control by default, Hairer's PI control with ``beta``."""

import pytest
import torch

import noderun
from noderun.solvers.control import PIController


def test_default_is_integral_control():
    controller = PIController(error_order=4)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(0.9 * 1e-3**-0.2)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(0.9 * 1e-3**-0.2)  # no memory


def test_beta_weighs_in_the_previous_ratio():
    controller = PIController(error_order=4, beta=0.04)
    first = controller.next_step(1.0, 1e-3, accepted=True)
    assert first == pytest.approx(0.9 * 1e-3**-0.17)
    assert controller.next_step(1.0, 1e-3, accepted=True) == pytest.approx(first * 1e-3**0.04)


def test_rejection_shrinks_and_growth_is_clipped():
    controller = PIController(error_order=4)
    assert controller.next_step(1.0, 5.0, accepted=False) == pytest.approx(0.9 * 5.0**-0.2)
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


def test_a_near_zero_error_never_shrinks_the_next_step():
    """Hairer's floor on the previous ratio: with the largest beta allowed, tiny errors still grow the step."""
    controller = PIController(error_order=4, beta=0.1)
    h = 1.0
    for ratio in (1e-12, 1e-12, 1e-9, 1e-6, 1e-4):
        new = controller.next_step(h, ratio, accepted=True)
        assert new > h
        h = new


def test_huge_tolerances_with_pi_control_finish():
    """Found by hypothesis: rtol 1e5 with beta 0.1875 shrank every accepted step until t stopped moving."""
    y = noderun.odeint(
        lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 0.1]), rtol=1e5, atol=1e-6, options={"beta": 0.1}
    )
    assert torch.isfinite(y).all()


def test_a_step_never_shrinks_below_what_moves_t():
    """Settings that shrink every accepted step: the solve runs out of steps cleanly instead of stalling
    at a zero step (which made dense output divide by zero)."""
    with pytest.raises(noderun.SolverError, match="max_num_steps"):
        noderun.odeint(
            lambda t, y: -y,
            torch.tensor([1.0]),
            torch.tensor([0.0, 0.5, 1.0]),
            options={"safety": 1e-6, "dfactor": 1e-300, "max_num_steps": 60},
        )
