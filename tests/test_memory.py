"""Memory: bytes saved for backward stay constant for the adjoint as the number of steps grows tenfold."""

import pytest
import torch
from torch import nn

import noderun


def saved_bytes(grad, end, method="rk4"):
    func = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 8))
    wrapped = lambda t, y: func(y)  # noqa: E731
    y0 = torch.randn(16, 8, requires_grad=True)
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    stats = noderun.SolveStats()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        ys = noderun.odeint(
            wrapped,
            y0,
            torch.tensor([0.0, end]),
            method=method,
            grad=grad,
            stats=stats,
            adjoint_params=tuple(func.parameters()),
            options={"step_size": 0.1},
        )
    ys.sum().backward()
    return total, stats.steps_accepted


def test_adjoint_memory_constant_in_steps():
    short, short_steps = saved_bytes("adjoint", 1.0)
    long, long_steps = saved_bytes("adjoint", 10.0)
    assert long_steps == 10 * short_steps
    assert long == short


def test_backprop_memory_grows_with_steps():
    short, _ = saved_bytes("backprop", 1.0)
    long, _ = saved_bytes("backprop", 10.0)
    assert long > 8 * short


def test_checkpoint_memory_is_one_state_per_step():
    short, short_steps = saved_bytes("checkpoint", 1.0)
    long, long_steps = saved_bytes("checkpoint", 10.0)
    state_bytes = 16 * 8 * 4
    assert long - short == (long_steps - short_steps) * state_bytes
    assert long < saved_bytes("backprop", 10.0)[0] / 5


@pytest.mark.parametrize("grad", ["adjoint", "checkpoint"])
def test_no_graph_is_kept_when_no_gradient_is_needed(grad):
    func = nn.Linear(4, 4)
    with torch.no_grad():
        ys = noderun.odeint(
            lambda t, y: func(y),
            torch.randn(2, 4),
            torch.tensor([0.0, 1.0]),
            grad=grad,
            adjoint_params=tuple(func.parameters()),
        )
    assert ys.grad_fn is None
