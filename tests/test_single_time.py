"""A single output time, ``len(t) == 1``: the initial state, in every gradient mode, without evaluating func."""

import pytest
import torch
from torch import nn

import noderun

D = torch.float64


class Refusing(nn.Module):
    """A right-hand side that must not be called, with a parameter for the adjoint to find."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, dtype=D))

    def forward(self, t, y):
        raise AssertionError("func was evaluated for a single output time")


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_single_time_returns_the_initial_state(grad, method):
    y0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    t = torch.tensor([0.5], dtype=D, requires_grad=True)
    stats = noderun.SolveStats()
    ys = noderun.odeint(Refusing(), y0, t, method=method, grad=grad, stats=stats)
    assert ys.shape == (1, 3, 2) and torch.equal(ys, y0[None].detach())
    assert stats == noderun.SolveStats()
    grad_y0, grad_t = torch.autograd.grad((ys * torch.arange(6.0, dtype=D).view(1, 3, 2)).sum(), (y0, t))
    torch.testing.assert_close(grad_y0, torch.arange(6.0, dtype=D).view(3, 2))
    assert torch.equal(grad_t, torch.zeros(1, dtype=D))


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
def test_single_time_with_a_tuple_state(grad):
    z = torch.randn(4, 2, requires_grad=True)
    logp = torch.zeros(4, 1, dtype=D, requires_grad=True)
    zs, logps = noderun.odeint(Refusing(), (z, logp), torch.tensor([1.0]), grad=grad)
    assert (zs.shape, zs.dtype, logps.shape, logps.dtype) == ((1, 4, 2), torch.float32, (1, 4, 1), D)
    assert torch.equal(zs[0], z.detach()) and torch.equal(logps[0], logp.detach())
    grad_z, grad_logp = torch.autograd.grad(zs.sum() + 2 * logps.sum(), (z, logp))
    assert torch.equal(grad_z, torch.ones_like(z)) and torch.equal(grad_logp, 2 * torch.ones_like(logp))


def test_single_time_is_a_copy():
    """Writing into the result leaves y0 alone (as every longer solve's fresh output does)."""
    y0 = torch.ones(2)
    ys = noderun.odeint(Refusing(), y0, torch.tensor([0.0]))
    ys[0, 0] = 5.0
    assert torch.equal(y0, torch.ones(2))


def test_single_time_still_validates_the_setting():
    with pytest.raises(ValueError, match="nn.Module or pass adjoint_params"):
        noderun.odeint(lambda t, y: y, torch.ones(2), torch.tensor([0.0]), grad="adjoint")
    with pytest.raises(ValueError, match="unknown method"):
        noderun.odeint(Refusing(), torch.ones(2), torch.tensor([0.0]), method="rk45")
