"""Gradients of every mode: gradcheck, agreement between modes, the seminorm, and time gradients."""

import pytest
import torch
from torch import nn

import noderun
from noderun.solvers.methods import get_method

D = torch.float64


class MLPDynamics(nn.Module):
    """dy/dt = W2 tanh(W1 y + b1 + t) : time-dependent, with more parameters than state."""

    def __init__(self, dim=2, hidden=16):
        super().__init__()
        self.net1 = nn.Linear(dim, hidden).to(D)
        self.net2 = nn.Linear(hidden, dim).to(D)

    def forward(self, t, y):
        return self.net2(torch.tanh(self.net1(y) + t))


def tight(method):
    if method in noderun.FIXED_STEP:
        return {"method": method, "options": {"step_size": 0.05}}
    return {"method": method, "rtol": 1e-10, "atol": 1e-10}


def gradients(func, y0, t, grad, **kwargs):
    stats = noderun.SolveStats()
    ys = noderun.odeint(func, y0, t, grad=grad, stats=stats, **kwargs)
    loss = (ys**2).sum() + ys[-1, :, 0].sum()
    inputs = [y0, *func.parameters()] + ([t] if t.requires_grad else [])
    return torch.autograd.grad(loss, inputs), stats


# The adjoint gives the continuous gradient, not a fixed grid's, so it is checked on a tight dopri5 solve.
@pytest.mark.parametrize(
    "grad, method",
    [
        ("backprop", "rk4"),
        ("checkpoint", "rk4"),
        ("backprop", "dopri5"),
        ("checkpoint", "dopri5"),
        ("adjoint", "dopri5"),
    ],
)
def test_gradcheck(grad, method):
    w1 = torch.randn(2, 4, dtype=D, requires_grad=True)
    b1 = torch.randn(4, dtype=D, requires_grad=True)
    w2 = (0.5 * torch.randn(4, 2, dtype=D)).requires_grad_(True)
    y0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=D)

    def solve(y0, w1, b1, w2):
        def func(t, y):
            return torch.tanh(y @ w1 + b1 + t) @ w2

        return noderun.odeint(func, y0, t, grad=grad, adjoint_params=(w1, b1, w2), **tight(method))

    assert torch.autograd.gradcheck(solve, (y0, w1, b1, w2), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
def test_gradcheck_with_respect_to_time(grad):
    func = MLPDynamics(hidden=4)
    y0 = torch.randn(2, 2, dtype=D)
    t = torch.tensor([0.2, 0.7, 1.5], dtype=D, requires_grad=True)

    def solve(t):
        return noderun.odeint(func, y0, t, grad=grad, rtol=1e-10, atol=1e-10)

    assert torch.autograd.gradcheck(solve, (t,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["euler", "rk4", "bosh3", "dopri5", "tsit5", "dopri8", "adaptive_heun"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_checkpoint_equals_backprop(method, direction):
    func = MLPDynamics()
    y0 = torch.randn(5, 2, dtype=D, requires_grad=True)
    t = direction * torch.linspace(0.0, 2.0, 7, dtype=D)
    settings = {
        "method": method,
        "rtol": 1e-6,
        "atol": 1e-6,
        "options": {"step_size": 0.1} if method in noderun.FIXED_STEP else None,
    }
    backprop, _ = gradients(func, y0, t, "backprop", **settings)
    checkpoint, stats = gradients(func, y0, t, "checkpoint", **settings)
    for a, b in zip(checkpoint, backprop):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert stats.nfe_backward > 0


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_checkpoint_skips_the_fsal_stage_it_does_not_need(method):
    """Recomputing an FSAL step for its gradient needs every stage but the last (f at y1, used only by the
    error estimate and dense output): the backward pass evaluates one stage fewer per step than the forward
    pass takes, the first stage included, and still equals backprop."""
    func = MLPDynamics()
    y0 = torch.randn(5, 2, dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 3.0], dtype=D)
    backprop, _ = gradients(func, y0, t, "backprop", method=method, rtol=1e-7, atol=1e-7)
    checkpoint, stats = gradients(func, y0, t, "checkpoint", method=method, rtol=1e-7, atol=1e-7)
    for a, b in zip(checkpoint, backprop):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    stages = get_method(method).stages
    assert stats.nfe_backward == (stages - 1) * stats.steps_accepted <= stats.nfe_forward


def test_a_skipped_fsal_stage_is_never_read():
    """Without its FSAL stage a step's y1 uses only the stages it evaluated, even from a reused buffer
    whose unevaluated row holds garbage."""
    from noderun.solvers.step import StageBuffer, rk_step

    tableau, y = get_method("dopri5"), torch.ones(3)
    buffer = StageBuffer(tableau, y)
    buffer.buffer.fill_(float("nan"))
    with torch.no_grad():
        skipped = rk_step(lambda t, x: -x, tableau, 0.0, y, 0.1, None, buffer, fsal_stage=False)
        full = rk_step(lambda t, x: -x, tableau, 0.0, y, 0.1, None)
    assert torch.allclose(skipped.y1, full.y1, rtol=1e-6, atol=0)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8", "bosh3"])
def test_adjoint_matches_backprop(method):
    func = MLPDynamics()
    y0 = torch.randn(5, 2, dtype=D, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 7, dtype=D, requires_grad=True)
    backprop, _ = gradients(func, y0, t, "backprop", **tight(method))
    adjoint, stats = gradients(func, y0, t, "adjoint", **tight(method))
    for a, b in zip(adjoint, backprop):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0


def test_adjoint_backwards_in_time_and_module_grads():
    func = MLPDynamics()
    y0 = torch.randn(4, 2, dtype=D)
    t = torch.linspace(1.0, -1.0, 5, dtype=D)
    expected, _ = gradients(func, y0.requires_grad_(True), t, "backprop", **tight("dopri5"))
    ys = noderun.odeint_adjoint(func, y0, t, rtol=1e-10, atol=1e-10)
    ((ys**2).sum() + ys[-1, :, 0].sum()).backward()
    for p, g in zip(func.parameters(), expected[1:]):
        assert torch.allclose(p.grad, g, rtol=1e-6, atol=1e-7)


def test_seminorm_keeps_gradients_and_cuts_backward_evaluations():
    func = MLPDynamics(hidden=32)
    y0 = torch.randn(8, 2, dtype=D, requires_grad=True)
    t = torch.linspace(0.0, 10.0, 2, dtype=D)  # long enough for the parameter channels to limit the steps
    kwargs = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6}
    full, full_stats = gradients(func, y0, t, "adjoint", **kwargs)
    semi, semi_stats = gradients(func, y0, t, "adjoint", adjoint_options={"norm": "seminorm"}, **kwargs)
    for a, b in zip(semi, full):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)
    assert semi_stats.nfe_backward < full_stats.nfe_backward


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
def test_float32_gradients_keep_dtype(grad):
    func = MLPDynamics().float()
    y0 = torch.randn(3, 2, requires_grad=True)
    ys = noderun.odeint(func, y0, torch.linspace(0, 1, 3), grad=grad, rtol=1e-5, atol=1e-6)
    ys.sum().backward()
    assert ys.dtype == torch.float32 and y0.grad.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in func.parameters())


def test_adjoint_with_parameter_free_dynamics():
    y0 = torch.tensor([1.0, 2.0], dtype=D, requires_grad=True)
    ys = noderun.odeint(
        lambda t, y: -y,
        y0,
        torch.tensor([0.0, 1.0], dtype=D),
        grad="adjoint",
        adjoint_params=(),
        rtol=1e-10,
        atol=1e-10,
    )
    ys[-1].sum().backward()
    assert torch.allclose(y0.grad, torch.full_like(y0, torch.exp(torch.tensor(-1.0, dtype=D)).item()))


def test_adjoint_with_loss_on_some_outputs_only():
    """Times whose outputs the loss ignores are skipped by the backward solve, with the same gradients."""
    func = MLPDynamics()
    y0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 9, dtype=D)

    def loss_of(ys):
        return ys[2].pow(2).sum() + ys[5].sum()

    expected = torch.autograd.grad(loss_of(noderun.odeint(func, y0, t, **tight("dopri5"))), [y0, *func.parameters()])
    few, many = noderun.SolveStats(), noderun.SolveStats()
    ys = noderun.odeint(func, y0, t, grad="adjoint", stats=few, **tight("dopri5"))
    got = torch.autograd.grad(loss_of(ys), [y0, *func.parameters()])
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    ys = noderun.odeint(func, y0, t, grad="adjoint", stats=many, **tight("dopri5"))
    torch.autograd.grad(ys.pow(2).sum(), [y0])
    assert few.nfe_backward < many.nfe_backward


@pytest.mark.parametrize("norm", [None, "seminorm"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_adjoint_crosses_output_times_in_one_solve(direction, norm):
    """With a loss on each of 41 close output times, the backward solve keeps its step size across each jump
    of the adjoint: about one dopri5 step per interval (seven evaluations: six stages and the derivative after
    the jump), not a new start with its own first steps in each; the gradient is the continuous one (backprop's
    at a tight tolerance), in both time directions, with and without the seminorm."""
    torch.manual_seed(0)
    func = MLPDynamics()
    y0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    t = direction * torch.linspace(0.0, 1.0, 41, dtype=D)
    stats = noderun.SolveStats()
    ys = noderun.odeint(
        func, y0, t, grad="adjoint", stats=stats, method="dopri5", rtol=1e-6, atol=1e-6, adjoint_options={"norm": norm}
    )
    got = torch.autograd.grad(ys.pow(2).sum(), [y0, *func.parameters()])
    exact = noderun.odeint(func, y0, t, method="dopri5", rtol=1e-12, atol=1e-12)
    expected = torch.autograd.grad(exact.pow(2).sum(), [y0, *func.parameters()])
    for a, b in zip(got, expected):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    intervals = len(t) - 1
    assert intervals <= stats.steps_accepted_backward <= intervals + 1
    assert stats.nfe_backward <= 7 * (intervals + 1) + 2


def test_adjoint_step_budget_is_per_output_interval():
    """The one backward solve needs a step per output interval where the forward crosses many with dense
    output: its max_num_steps applies per interval, as when each interval was solved apart."""
    torch.manual_seed(0)
    func = MLPDynamics()
    y0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 100, dtype=D)
    stats = noderun.SolveStats()
    ys = noderun.odeint(func, y0, t, grad="adjoint", stats=stats, rtol=1e-5, atol=1e-5, options={"max_num_steps": 50})
    ys.pow(2).sum().backward()
    assert stats.steps_accepted + stats.steps_rejected <= 50 < stats.steps_accepted_backward
    with pytest.raises(noderun.SolverError, match="max_num_steps=1 steps taken per interval between its 100 output"):
        ys = noderun.odeint(
            func, y0, t, grad="adjoint", rtol=1e-5, atol=1e-5, adjoint_options={"max_num_steps": 1, "first_step": 1e-6}
        )  # 99 intervals, 99 steps
        ys.pow(2).sum().backward()


class ScalarDynamics(nn.Module):
    """dy/dt = -rate * y + sin(t): works on a state of any shape, 0-dim included."""

    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(0.7, dtype=D))

    def forward(self, t, y):
        return -self.rate * y + torch.sin(t)


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_zero_dimensional_state_matches_a_one_element_state(grad, method):
    """A 0-dim y0 gives the solution and gradients (in y0, the parameters and t) of the same y0 of shape (1,)."""
    func = ScalarDynamics()
    results = []
    for y0 in (torch.tensor(1.3, dtype=D), torch.tensor([1.3], dtype=D)):
        y0.requires_grad_(True)
        t = torch.tensor([0.0, 0.5, 1.2], dtype=D, requires_grad=True)
        ys = noderun.odeint(func, y0, t, grad=grad, **tight(method))
        assert ys.shape == (3, *y0.shape)
        loss = (ys**2).sum() + ys[-1].sum()
        results.append([ys.detach().reshape(3), *torch.autograd.grad(loss, (y0, func.rate, t))])
    for scalar, vector in zip(*results):
        torch.testing.assert_close(scalar.reshape(vector.shape), vector, rtol=1e-12, atol=1e-12)
