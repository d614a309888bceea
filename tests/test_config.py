"""Config composition through Hydra's compose API: every option of every group, and the failure messages."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

import noderun
from conftest import compose_config
from noderun.data.mnist import MNIST_INFO
from noderun.data.spirals import Spirals
from noderun.data.toy2d import Toy2D
from noderun.models.ode_block import SolverSettings
from noderun.solvers.methods import IMPLICIT, STIFF
from noderun.train.build import build_model, build_task

CONF = Path(noderun.__file__).resolve().parent.parent / "conf"
GROUPS = ["dataset", "model", "solver", "grad", "optimizer", "task", "experiment"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def test_every_method_has_a_solver_config():
    assert sorted(name for group, name in OPTIONS if group == "solver") == sorted(noderun.METHODS)


# Options that only make sense together: a sequence model needs trajectories and the time-series task,
# a flow needs 2-D samples and a density task.
COMPANIONS = {
    ("model", "latent_ode"): ["dataset=spirals", "task=timeseries"],
    ("model", "rnn"): ["dataset=spirals", "task=timeseries"],
    ("dataset", "spirals"): ["model=latent_ode", "task=timeseries"],
    ("task", "timeseries"): ["dataset=spirals", "model=rnn"],
    ("model", "cnf"): ["dataset=toy2d", "task=density"],
    ("model", "planar_nf"): ["dataset=toy2d", "task=density"],
    ("dataset", "toy2d"): ["model=cnf", "task=density"],
    ("task", "density"): ["dataset=toy2d", "model=planar_nf"],
    ("task", "density_matching"): ["dataset=toy2d", "model=planar_nf", "model.direction=generative"],
    # implicit methods form dense Jacobians: a small ODE-Net state (2 channels) keeps them quick
    **{("solver", name): ["model.channels=2"] for name in (*IMPLICIT, *STIFF)},
}


def runtime_info(dataset):
    """The runtime facts a model is built with, without reading MNIST from disk."""
    if isinstance(dataset, Spirals):
        return {"obs_dim": 2}
    if isinstance(dataset, Toy2D):
        return dataset.load().info
    return MNIST_INFO


def smoke_loss(cfg, model, task):
    """One loss on a tiny batch of the composed dataset's kind."""
    if cfg.dataset["_target_"].endswith("Spirals"):
        data = Spirals(n_spirals=4).load()
        batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=2)))
    elif cfg.dataset["_target_"].endswith("Toy2D"):
        batch = [torch.randn(4, 2)]
    else:
        batch = (torch.rand(2, 1, 28, 28), torch.tensor([3, 7]))
    return task.loss(model, batch)[0]


# each implicit method builds and backpropagates like implicit_euler, at some seconds each: those run with -m slow
BUILDS = [
    pytest.param(group, option, marks=pytest.mark.slow)
    if group == "solver" and option in (*IMPLICIT, *STIFF) and option not in ("implicit_euler", "kvaerno5")
    else (group, option)
    for group, option in OPTIONS
]


@pytest.mark.parametrize("group, option", BUILDS)
def test_every_option_composes_and_builds(group, option):
    cfg = compose_config(f"{group}={option}", *COMPANIONS.get((group, option), []))
    solver = SolverSettings.from_config(cfg.solver, cfg.grad)
    dataset = instantiate(cfg.dataset)
    info = runtime_info(dataset)
    model = build_model(cfg, info)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    task = build_task(cfg, info)
    loss = smoke_loss(cfg, model, task)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer) and hasattr(dataset, "load")
    if group == "solver":
        assert solver.method == option


@pytest.mark.parametrize("optimizer", [name for group, name in OPTIONS if group == "optimizer"])
def test_every_optimizer_takes_train_lr_unless_overridden(optimizer):
    parameters = torch.nn.Linear(2, 2).parameters
    cfg = compose_config(f"optimizer={optimizer}", "train.lr=0.01")
    assert instantiate(cfg.optimizer)(parameters()).param_groups[0]["lr"] == 0.01
    cfg = compose_config(f"optimizer={optimizer}", "train.lr=0.01", "optimizer.lr=0.2")
    assert instantiate(cfg.optimizer)(parameters()).param_groups[0]["lr"] == 0.2


def test_solver_overrides_reach_the_solver():
    cfg = compose_config("solver=rk4", "solver.step_size=0.25", "grad=checkpoint", "solver.compile=true")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert settings.options == {"step_size": 0.25, "compile": True} and settings.grad == "checkpoint"
    cfg = compose_config("solver=tsit5", "solver.rtol=1e-4", "solver.atol=1e-6", "grad.seminorm=true")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert (settings.method, settings.rtol, settings.atol) == ("tsit5", 1e-4, 1e-6)
    assert settings.adjoint_options["norm"] == "seminorm" and "compile" not in settings.adjoint_options


def test_a_method_alias_is_accepted_as_solver_method():
    """Aliases (torchdiffeq's names) have no config file of their own but are accepted as solver.method."""
    cfg = compose_config("solver=heun", "solver.method=heun2")
    settings = SolverSettings.from_config(cfg.solver, cfg.grad)
    assert settings.method == "heun2" and settings.forward.tableau is noderun.METHODS["heun"]


def test_bad_solver_values_fail_before_training():
    cfg = compose_config("solver.rtol=-1")
    with pytest.raises(ValueError, match="rtol"):
        SolverSettings.from_config(cfg.solver, cfg.grad)


def test_unknown_solver_lists_the_choices():
    with pytest.raises(MissingConfigException) as info:
        compose_config("solver=rk45")
    assert "dopri5" in str(info.value) and "rk4" in str(info.value)


@pytest.mark.parametrize("override", ["train.epochz=3", "solver.step_size=0.1", "grad=backprop grad.seminorm=true"])
def test_unknown_keys_fail_fast(override):
    with pytest.raises(ConfigCompositionException):
        compose_config(*override.split())
