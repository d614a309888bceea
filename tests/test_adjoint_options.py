"""The adjoint's own settings as torchdiffeq takes them: ``adjoint_method`` (another method for the backward
solve, also ``grad.method`` in the runner) and a callable backward ``norm``, given the augmented state as the
tuple ``(t, *y, *a, *dL/dθ)``."""

import pytest
import torch
from torch import nn

import noderun
from conftest import compose_config
from noderun import SettingError, SolverSettings, odeint, odeint_adjoint

T = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def gradients(net, **kwargs):
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    ys = odeint(lambda t, y: net(y), y0, T, adjoint_params=tuple(net.parameters()), rtol=1e-10, atol=1e-10, **kwargs)
    return torch.autograd.grad(ys.pow(2).sum(), (y0, *net.parameters()))


@pytest.mark.parametrize(
    "adjoint_method, adjoint_options", [("dopri8", None), ("tsit5", None), ("rk4", {"step_size": 0.01})]
)
def test_adjoint_method_solves_the_backward_pass_to_the_same_gradient(adjoint_method, adjoint_options):
    net = model()
    expected = gradients(net, grad="backprop")
    stats = noderun.SolveStats()
    got = gradients(net, grad="adjoint", adjoint_method=adjoint_method, adjoint_options=adjoint_options, stats=stats)
    tol = 1e-6 if adjoint_method == "rk4" else 1e-8
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=tol, atol=tol)
    if adjoint_method == "rk4":
        assert stats.steps_accepted_backward == 150  # 1.5 / 0.01 fixed steps


def test_adjoint_method_that_cannot_take_the_forward_options_is_refused():
    with pytest.raises(SettingError, match="adjoint_method='rk4' does not take the forward options.*first_step"):
        odeint_adjoint(
            lambda t, y: -y,
            torch.ones(2),
            T.float(),
            adjoint_params=(),
            options={"first_step": 0.1},
            adjoint_method="rk4",
        )
    with pytest.raises(SettingError, match="adjoint_method: unknown method 'nope'"):
        odeint_adjoint(lambda t, y: -y, torch.ones(2), T.float(), adjoint_params=(), adjoint_method="nope")


def test_grad_method_in_the_runner_sets_the_backward_method_and_step():
    cfg = compose_config("grad=adjoint", "grad.method=rk4", "grad.step_size=0.05")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert settings.forward.tableau.name == "dopri5"
    assert (settings.backward.tableau.name, settings.backward.step_size) == ("rk4", 0.05)


def test_a_callable_adjoint_norm_receives_the_tuple_of_the_augmented_state():
    seen = []

    def norm(state):
        seen.append(tuple(x.shape for x in state))
        return max(x.abs().max() for x in state)

    weight = torch.tensor([0.5, -0.2, 0.1, 0.3, 0.7, 0.2, 0.1], requires_grad=True)
    scale = torch.tensor(0.3, requires_grad=True)

    def func(t, s):
        return -scale * s[0], -weight.sum() * s[1]

    y0 = (torch.tensor(1.0), torch.tensor([[0.5, 0.5], [0.1, 0.1]]))
    ys = odeint_adjoint(
        func, y0, torch.tensor([0.0, 1.0]), adjoint_params=(weight, scale), adjoint_options={"norm": norm}
    )
    (ys[0].sum() + ys[1].sum()).backward()
    assert seen and set(seen) == {((), (), (2, 2), (), (2, 2), (7,), ())}
    assert float(scale.grad) != 0.0 and float(weight.grad.abs().sum()) != 0.0
