"""Continuous normalizing flows and their planar baseline: traces, densities, toy data, presets."""

import math

import pytest
import torch

from conftest import compose_config
from noderun.data.toy2d import SHAPES, Toy2D
from noderun.models.cnf import CNF, PlanarField
from noderun.models.ode_block import SolverSettings
from noderun.models.planar_nf import PlanarNF
from noderun.models.trace import exact_trace, hutchinson_trace
from noderun.train.run import run

SMALL = [
    "dataset.n_train=64",
    "dataset.n_test=64",
    "dataset.n_reference=256",
    "train.batch_size=32",
    "train.test_batch_size=64",
    "train.max_iters=2",
    "train.progress=false",
]
PRESETS = {
    "cnf_circles": ["model.width=8"],
    "cnf_moons": ["model.width=8"],
    "nf_circles": [],
    "nf_moons": [],
    "dm_cnf": ["model.width=8", "task.eval_samples=64"],
    "dm_nf": ["task.eval_samples=64"],
}


def square_grid(half_width: float, points: int) -> tuple[torch.Tensor, float]:
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    return grid, float(axis[1] - axis[0]) ** 2


def strong_cnf(grad: str = "backprop", trace: str = "exact", tolerance: float = 1e-7) -> CNF:
    """A CNF whose random flow moves mass far from its base (hypernetwork output scaled up), in float64."""
    torch.manual_seed(0)
    model = CNF(
        2, SolverSettings("dopri5", tolerance, tolerance, grad=grad), width=8, hyper_hidden=8, trace=trace, t_end=1.0
    ).double()
    with torch.no_grad():
        model.dynamics.field.hypernet[-1].weight.mul_(8.0)
        model.dynamics.field.hypernet[-1].bias.normal_(0.0, 1.5)
    return model


@pytest.mark.parametrize("dim", [2, 3])
def test_exact_trace_matches_the_jacobian(dim):
    torch.manual_seed(dim)
    field = PlanarField(dim, width=6, hyper_hidden=5).double()
    z, t = torch.randn(4, dim, dtype=torch.float64, requires_grad=True), torch.tensor(0.3, dtype=torch.float64)
    trace = exact_trace(field(t, z), z, create_graph=False)
    for row in range(4):
        jacobian = torch.autograd.functional.jacobian(lambda point: field(t, point[None])[0], z[row].detach())
        assert trace[row].item() == pytest.approx(torch.trace(jacobian).item(), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_estimate_is_unbiased(noise):
    torch.manual_seed(1)
    field = PlanarField(2, width=6, hyper_hidden=5).double()
    with torch.no_grad():
        field.hypernet[-1].weight.mul_(5.0)
    draws = 40_000
    point = torch.randn(1, 2, dtype=torch.float64)
    z = point.expand(draws, 2).clone().requires_grad_(True)
    t = torch.tensor(0.5, dtype=torch.float64)
    f = field(t, z)
    exact = exact_trace(f, z, create_graph=False)[0].item()
    epsilon = torch.randn_like(z) if noise == "gaussian" else torch.randint_like(z, 0, 2) * 2 - 1
    estimates = hutchinson_trace(f, z, epsilon, create_graph=False)
    standard_error = estimates.std().item() / math.sqrt(draws)
    assert estimates.std().item() > 1e-3  # an estimate, not the exact trace in disguise
    assert abs(estimates.mean().item() - exact) < 4 * standard_error


def test_cnf_density_integrates_to_one():
    model = strong_cnf(tolerance=1e-6).eval()
    grid, cell = square_grid(3.0, 121)
    with torch.no_grad():
        log_p = model.log_prob(grid)
    assert (log_p - model.base.log_prob(grid)).abs().max() > 0.5  # the flow really reshapes the base
    assert log_p.exp().sum().item() * cell == pytest.approx(1.0, abs=0.01)


def test_cnf_samples_and_densities_agree_both_ways():
    model = strong_cnf().eval()
    with torch.no_grad():
        samples, log_q = model.sample_with_log_prob(50, torch.zeros(1, dtype=torch.float64))
        assert torch.allclose(model.log_prob(samples), log_q, atol=1e-5)


@pytest.mark.parametrize("grad", ["adjoint", "checkpoint"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_every_grad_mode_gives_the_backprop_gradient(grad, trace):
    x = torch.randn(16, 2, dtype=torch.float64)
    gradients = {}
    for mode in ("backprop", grad):
        model = strong_cnf(mode, trace, tolerance=1e-9)
        torch.manual_seed(5)  # the same Hutchinson noise in both solves
        (-model.log_prob(x).mean()).backward()
        gradients[mode] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert model.block.stats.nfe_forward > 0
    assert gradients["backprop"].norm() > 1e-3
    assert torch.allclose(gradients[grad], gradients["backprop"], rtol=1e-5, atol=1e-7)


def test_bad_cnf_options_are_refused():
    with pytest.raises(ValueError, match="model.trace"):
        CNF(2, SolverSettings(), trace="diagonal")
    with pytest.raises(ValueError, match="model.noise"):
        CNF(2, SolverSettings(), trace="hutchinson", noise="uniform")


def test_planar_layers_invert_and_their_log_determinant_is_the_jacobians():
    torch.manual_seed(2)
    flow = PlanarNF(2, layers=6).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.w.mul_(20.0), layer.u.mul_(20.0)
    x = torch.randn(5, 2, dtype=torch.float64)
    z, log_det = flow._through_layers(x)
    assert torch.allclose(flow._inverse_layers(z), x, atol=1e-9)
    for row in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda point: flow._through_layers(point[None])[0][0], x[row])
        assert log_det[row].item() == pytest.approx(torch.linalg.det(jacobian).abs().log().item(), abs=1e-9)


@pytest.mark.parametrize("direction", ["normalizing", "generative"])
def test_planar_flow_density_integrates_to_one_and_matches_its_samples(direction):
    torch.manual_seed(3)
    flow = PlanarNF(2, layers=8, direction=direction).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.w.mul_(10.0), layer.u.mul_(3.0)
        grid, cell = square_grid(3.0, 161)
        assert flow.log_prob(grid).exp().sum().item() * cell == pytest.approx(1.0, abs=0.01)
        samples, log_q = flow.sample_with_log_prob(20, torch.zeros(1, dtype=torch.float64))
        assert torch.allclose(flow.log_prob(samples), log_q, atol=1e-6)


def test_planar_flow_refuses_to_train_through_its_inverse():
    flow = PlanarNF(2, layers=2, direction="generative")
    with pytest.raises(ValueError, match="model.direction=normalizing"):
        flow.log_prob(torch.randn(3, 2))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_toy_data_is_deterministic_and_its_density_integrates_to_one(name):
    sizes = {"n_train": 300, "n_test": 100, "n_reference": 1024}
    data, again = Toy2D(name, seed=4, **sizes).load(), Toy2D(name, seed=4, **sizes).load()
    train = data.train.tensors[0]
    assert train.shape == (300, 2) and data.test.tensors[0].shape == (100, 2) and data.info["dim"] == 2
    assert torch.equal(train, again.train.tensors[0])
    assert not torch.equal(train, Toy2D(name, seed=5, **sizes).load().train.tensors[0])
    assert train.abs().max() < 3
    grid, cell = square_grid(2.5, 201)
    assert data.info["log_density"](grid.float()).exp().sum().item() * cell == pytest.approx(1.0, abs=0.01)


def test_unknown_toy_shape_is_refused():
    with pytest.raises(ValueError, match="circles"):
        Toy2D("swissroll")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_flow_presets_run(preset, tmp_path):
    cfg = compose_config(f"experiment={preset}", *SMALL, *PRESETS[preset])
    summary = run(cfg, tmp_path)
    headline = "test_kl" if preset.startswith("dm") else "test_nll"
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["headline"] == headline
    assert math.isfinite(summary[headline])
    assert (summary["nfe_forward"] > 0) == ("cnf" in preset)
    if headline == "test_nll":
        assert summary["test_nll"] > summary["test_nll_data"]  # two steps cannot beat the data's own density
