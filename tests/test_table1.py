"""Table 1 and Figure 3: the four models, their presets, the memory-versus-depth check, the figure command."""

import csv

import pytest
import torch

from conftest import compose_config
from noderun.models.mlp import MLP
from noderun.models.ode_block import SolverSettings
from noderun.models.odenet import ODENet
from noderun.models.resnet import ResNet
from noderun.studies.figure3 import figure3
from noderun.studies.memory_depth import memory_depth
from noderun.train.run import run

FAST = [
    "train.batch_size=8",
    "train.test_batch_size=100",
    "dataset.test_fraction=0.02",
    "train.progress=false",
    "train.max_iters=1",
]


def parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "model, low, high",
    [
        (MLP((1, 28, 28), 10), 0.23e6, 0.25e6),  # paper: 0.24 M
        (ResNet((1, 28, 28), 10), 0.55e6, 0.62e6),  # paper: 0.60 M (0.58 M with bias-free convs)
        (ODENet((1, 28, 28), 10, SolverSettings()), 0.20e6, 0.23e6),  # paper: 0.22 M (ODE-Net and RK-Net)
        (
            ODENet((1, 28, 28), 10, SolverSettings(method="rk4", options={"step_size": 0.25}, grad="backprop")),
            0.20e6,
            0.23e6,
        ),
    ],
)
def test_models_forward_shape_and_size(model, low, high):
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert low <= parameters(model) <= high


@pytest.mark.parametrize("preset", ["mnist_mlp", "mnist_resnet", "mnist_rknet", "mnist_odenet"])
def test_every_table1_preset_trains_one_iteration(preset, tmp_path):
    cfg = compose_config(f"experiment={preset}", *FAST)
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 1
    assert summary["model"] == preset.removeprefix("mnist_").replace("rknet", "odenet")
    if preset in ("mnist_rknet", "mnist_odenet"):
        assert summary["nfe_forward"] > 0 and (summary["nfe_backward"] > 0) == (preset == "mnist_odenet")


def test_paper_schedule_on_full_mnist():
    cfg = compose_config("experiment=mnist_odenet", "dataset=mnist")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.optimizer.lr) == (160, 128, 0.1)
    assert list(cfg.train.lr_milestones) == [60, 100, 140]


def test_memory_depth_shows_constant_adjoint_memory(tmp_path):
    rows = memory_depth(str(tmp_path), multiples=(1, 2), batch_size=4)
    saved = {(r["model"], r["grad"], r["multiple"]): r["saved_tensors_mb"] for r in rows}
    base = saved[("odenet (rk4)", "adjoint", 1)]  # downsampling and head: the same in every mode
    assert saved[("odenet (rk4)", "adjoint", 2)] == base
    for grad in ("backprop", "checkpoint"):  # the ODE block's share doubles with twice the steps
        growth = (saved[("odenet (rk4)", grad, 2)] - base) / (saved[("odenet (rk4)", grad, 1)] - base)
        assert 1.8 < growth < 2.2
    assert saved[("resnet", "backprop", 2)] > saved[("resnet", "backprop", 1)]
    assert (tmp_path / "memory_depth.png").stat().st_size > 0 and (tmp_path / "memory_depth.csv").exists()


def test_figure3_from_a_tiny_checkpoint(tmp_path):
    cfg = compose_config("experiment=mnist_odenet", *FAST)
    run(cfg, tmp_path / "run")
    paths = figure3(str(tmp_path / "run"), str(tmp_path / "fig"), batch_size=4, tolerances=(1e-2, 1e-3), repeats=1)
    assert sorted(p.name for p in paths) == [
        "figure3a_nfe_vs_error.png",
        "figure3b_nfe_vs_time.png",
        "figure3c_backward_vs_forward.png",
        "figure3d_nfe_over_training.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
    with (tmp_path / "fig" / "figure3_tolerance_sweep.csv").open() as file:
        sweep = list(csv.DictReader(file))
    assert [float(row["tolerance"]) for row in sweep] == [1e-2, 1e-3]
    assert float(sweep[1]["error_rms"]) < float(sweep[0]["error_rms"])
    assert int(sweep[1]["nfe_forward"]) >= int(sweep[0]["nfe_forward"]) and int(sweep[0]["train_nfe_backward"]) > 0


@pytest.mark.slow  # trains a run first (8 s)
def test_figure3_refuses_a_model_without_ode_block(tmp_path):
    cfg = compose_config("experiment=mnist_mlp", *FAST)
    run(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="no ODE block"):
        figure3(str(tmp_path / "run"), str(tmp_path / "fig"), batch_size=4, tolerances=(1e-2,), repeats=1)
