"""Regularisers integrated in the solve (kinetic energy, Jacobian Frobenius norm) against their closed forms
on a linear ODE, in every gradient mode; STEER's end time; augmented ODE models keep their output shape."""

import pytest
import torch
from torch import nn

from conftest import compose_config
from noderun.log.files import read_metrics
from noderun.models.cnf import CNF
from noderun.models.latent_ode import LatentODE
from noderun.models.ode_block import ODEBlock
from noderun.models.odenet import ODENet
from noderun.models.regularize import Regularization, penalty
from noderun.solvers.settings import SolverSettings
from noderun.train.run import run

T = 0.7
H0 = torch.tensor([[1.0, -0.5, 2.0], [0.3, 1.2, -0.8]], dtype=torch.float64)


class Diagonal(nn.Module):
    """``dh/dt = a ⊙ h``: ``∂f/∂h = diag(a)``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([-1.0, 0.5, 0.3], dtype=torch.float64))

    def forward(self, t, h):
        return h * self.a


def kinetic_closed_form(a, h0):
    """``∫₀ᵀ ‖a ⊙ h0 e^{at}‖² dt`` per sample, batch mean."""
    return (h0**2 * a * (torch.exp(2 * a * T) - 1) / 2).sum(1).mean()


def jacobian_closed_form(a):
    """``∫₀ᵀ ‖εᵀ diag(a)‖² dt`` with Rademacher ε (ε² = 1): ``T ‖a‖²``, whatever ε."""
    return T * (a**2).sum()


SOLVERS = {
    "dopri5": dict(rtol=1e-10, atol=1e-10),
    "rk4": dict(options={"step_size": 1e-3}),
    "kvaerno5": dict(rtol=1e-9, atol=1e-9),
}


def regularized_block(method, grad, **weights):
    settings = SolverSettings(method, grad=grad, **SOLVERS[method])
    block = ODEBlock(Diagonal(), settings, integration_time=T)
    block.regularization = Regularization(noise="rademacher", **weights)
    return block


@pytest.mark.parametrize("grad", ["backprop", "adjoint", "checkpoint"])
@pytest.mark.parametrize("method", list(SOLVERS))
def test_each_regulariser_equals_its_closed_form_and_its_gradient(method, grad):
    block = regularized_block(method, grad, kinetic=1.0, jacobian=1.0)
    out = block(H0)
    a = block.func.a
    expected = {"kinetic": kinetic_closed_form(a, H0), "jacobian": jacobian_closed_form(a)}
    tolerance = 1e-6
    for term, value in expected.items():
        assert block.integrals[term].item() == pytest.approx(value.item(), rel=tolerance)
    torch.testing.assert_close(out, H0 * torch.exp(a * T), rtol=tolerance, atol=tolerance)
    total, values = penalty([block])
    assert set(values) == {"reg_kinetic", "reg_jacobian"}
    (computed,) = torch.autograd.grad(total, a)
    (exact,) = torch.autograd.grad(sum(expected.values()), a)
    torch.testing.assert_close(computed, exact, rtol=1e-5, atol=1e-6)


def test_weights_scale_the_penalty_and_only_weighted_terms_are_integrated():
    block = regularized_block("dopri5", "backprop", kinetic=0.25)
    block(H0)
    assert set(block.integrals) == {"kinetic"}
    total, values = penalty([block])
    assert total.item() == pytest.approx(0.25 * values["reg_kinetic"])
    assert values["reg_kinetic"] == pytest.approx(kinetic_closed_form(block.func.a, H0).item(), rel=1e-6)


def test_an_explicit_adaptive_solve_takes_the_steps_it_takes_unregularised():
    block = ODEBlock(Diagonal(), SolverSettings("dopri5", 1e-5, 1e-5, grad="backprop"), integration_time=T)
    h0 = 10 * H0  # a kinetic energy far above the state's scale, which would shrink the first step
    block(h0)
    plain = (block.stats.steps_accepted, block.stats.nfe_forward)
    block.stats.reset()
    block.regularization = Regularization(kinetic=1.0, jacobian=1.0)
    block(h0)
    assert (block.stats.steps_accepted, block.stats.nfe_forward) == plain
    assert block.integrals["kinetic"].item() == pytest.approx(kinetic_closed_form(block.func.a, h0).item(), rel=1e-4)


def test_evaluation_integrates_no_regulariser_and_solves_the_same_state():
    block = regularized_block("dopri5", "backprop", kinetic=1.0, jacobian=1.0)
    trained = block(H0)
    block.eval()
    block.integrals = {}
    evaluated = block(H0)
    assert block.integrals == {}
    torch.testing.assert_close(evaluated, trained)


def test_a_backward_solve_integrates_a_positive_kinetic_energy():
    block = regularized_block("dopri5", "backprop", kinetic=1.0)
    block.trajectory(H0, torch.tensor([T, 0.0], dtype=torch.float64))
    h_start = H0 * torch.exp(-block.func.a * T)  # the state at 0 when H0 is the state at T
    assert block.integrals["kinetic"].item() == pytest.approx(
        kinetic_closed_form(block.func.a, h_start).item(), rel=1e-6
    )


@pytest.mark.parametrize("grad", ["backprop", "adjoint"])
def test_a_cnf_integrates_the_regulariser_of_its_flow_state_alone(grad):
    torch.manual_seed(0)
    model = CNF(2, SolverSettings("dopri5", 1e-6, 1e-6, grad=grad), width=4, hyper_hidden=4, t_end=1.0).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    plain = model.log_prob(x)
    model.block.regularization = Regularization(kinetic=1.0)
    regularized = model.log_prob(x)
    torch.testing.assert_close(regularized, plain, rtol=1e-5, atol=1e-5)
    kinetic = model.block.integrals["kinetic"]
    times = torch.linspace(1.0, 0.0, 2001, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        z, _ = model.block.trajectory((x, x.new_zeros(5)), times)
        speed = torch.stack([model.dynamics.field(t, zt).pow(2).sum(1).mean() for t, zt in zip(times, z)])
    assert kinetic.item() == pytest.approx(torch.trapezoid(speed, dx=1 / 2000).item(), rel=1e-4)
    kinetic.backward()
    assert all(p.grad is not None for p in model.dynamics.field.parameters())


def test_negative_weights_and_unknown_noise_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        Regularization(kinetic=-1.0)
    with pytest.raises(ValueError, match="rademacher"):
        Regularization(noise="uniform")


def test_end_time_jitter_moves_the_training_end_time_only():
    block = regularized_block("dopri5", "backprop")
    block.end_time_jitter = 0.2
    ends = {float(block.span()[1]) for _ in range(20)}
    assert len(ends) == 20 and all(T - 0.2 <= end <= T + 0.2 for end in ends)
    block.eval()
    assert float(block.span()[1]) == pytest.approx(T)


def test_augmented_odenet_keeps_its_output_shape_and_starts_the_extra_channels_at_zero():
    settings = SolverSettings("rk4", options={"step_size": 0.5}, grad="backprop")
    images = torch.randn(2, 1, 28, 28)
    plain = ODENet((1, 28, 28), 10, settings, channels=8)
    augmented = ODENet((1, 28, 28), 10, settings, channels=8, augment_dim=3)
    assert ODENet((1, 28, 28), 10, settings, channels=64, augment_dim=2)(images).shape == (2, 10)  # 66 channels
    starts = []
    augmented.feature.register_forward_hook(lambda module, inputs, output: starts.append(inputs[0]))
    assert augmented(images).shape == plain(images).shape == (2, 10)
    assert starts[0].shape[1] == 11 and torch.all(starts[0][:, 8:] == 0) and torch.any(starts[0][:, :8] != 0)


def test_augmented_latent_ode_keeps_its_output_shape_and_flows_zero_dimensions():
    settings = SolverSettings("dopri5", 1e-4, 1e-4, grad="backprop")
    batch = {
        "values": torch.randn(3, 5, 2),
        "mask": torch.ones(3, 5, dtype=torch.bool),
        "times": torch.linspace(0, 1, 8).expand(3, 8),
    }
    plain = LatentODE(2, settings, latent_dim=4)
    augmented = LatentODE(2, settings, latent_dim=4, augment_dim=2)
    path, decoded = augmented.decode_path(torch.randn(3, 4), batch["times"][0])
    assert path.shape == (3, 8, 6) and torch.all(path[:, 0, 4:] == 0)
    assert augmented.predict(batch).shape == plain.predict(batch).shape == (3, 8, 2)
    log_likelihood, kl = augmented.elbo_terms(batch)
    assert log_likelihood.shape == kl.shape == (3,)


def test_a_regularised_augmented_jittered_run_logs_each_term(tmp_path):
    summary = run(
        compose_config(
            "experiment=mnist5k_odenet_smoke",
            "regularizer=rnode",
            "model.augment_dim=2",
            "train.end_time_jitter=0.3",
            "model.channels=8",
            "train.max_iters=2",
            "train.test_batch_size=500",
            "dataset.test_fraction=0.02",
            "train.progress=false",
            "solver=rk4",
            "solver.step_size=0.5",
        ),
        tmp_path,
    )
    assert summary["status"] == "completed"
    record = read_metrics(tmp_path)[-1]
    assert record["reg_kinetic_mean"] > 0 and record["reg_jacobian_mean"] > 0
    assert summary["reg_kinetic"] == pytest.approx(record["reg_kinetic_mean"])


@pytest.mark.parametrize("grad", ["adjoint", "checkpoint"])
def test_on_nonlinear_dynamics_every_grad_mode_gives_backprops_gradient_of_the_penalty(grad):
    """Unlike the linear case, the Jacobian term here depends on the state, so its gradient needs the
    second derivatives of the dynamics in every mode."""

    class Tanh(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3))

        def forward(self, t, h):
            return self.net(h)

    gradients = {}
    for mode in ("backprop", grad):
        torch.manual_seed(0)
        block = ODEBlock(Tanh().double(), SolverSettings("dopri5", 1e-9, 1e-9, grad=mode), integration_time=T)
        block.regularization = Regularization(kinetic=1.0, jacobian=1.0, noise="rademacher")
        out = block(H0)
        total, _ = penalty([block])
        gradients[mode] = torch.autograd.grad(total + out.pow(2).sum(), list(block.parameters()))
    for computed, exact in zip(gradients[grad], gradients["backprop"]):
        torch.testing.assert_close(computed, exact, rtol=1e-6, atol=1e-8)
