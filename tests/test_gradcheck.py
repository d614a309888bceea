"""The gradient-mode study: its reference against finite differences, its errors, and its command."""

import csv

import pytest
import torch
from torch import nn

from noderun.cli import main
from noderun.models.ode_block import ODEBlock
from noderun.solvers.settings import SolverSettings
from noderun.studies.gradcheck import MODES, REFERENCE, gradient_errors, reference_gradient
from noderun.train.failures import solver_swapped


class TimeFree(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, t, h):
        return self.net(h)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        func = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
        with torch.no_grad():
            func[0].weight.mul_(3.0)  # dynamics that a loose tolerance gets visibly wrong
        self.block = ODEBlock(
            TimeFree(func), SolverSettings("dopri5", 1e-3, 1e-3, grad="backprop"), integration_time=4.0
        )

    def forward(self, x):
        return self.block(x)


def small_problem():
    torch.manual_seed(0)
    model = Small().double()
    x = torch.randn(5, 2, dtype=torch.float64)
    return model, lambda m: m(x).pow(2).sum()


def central_difference(model, loss_of, parameter, index, step=1e-6):
    """Of the loss solved as the reference solves it."""
    flat = parameter.data.view(-1)
    original = flat[index].item()
    values = []
    for sign in (1, -1):
        flat[index] = original + sign * step
        with torch.no_grad(), solver_swapped(model, SolverSettings(grad="backprop", **REFERENCE)):
            values.append(float(loss_of(model)))
    flat[index] = original
    return (values[0] - values[1]) / (2 * step)


def test_the_reference_agrees_with_finite_differences():
    model, loss_of = small_problem()
    reference = reference_gradient(model, loss_of)
    offset = 0
    for parameter in model.parameters():
        for index in (0, parameter.numel() - 1):
            expected = central_difference(model, loss_of, parameter, index)
            assert reference[offset + index].item() == pytest.approx(expected, rel=1e-6, abs=1e-9)
        offset += parameter.numel()
    assert offset == len(reference)


def test_every_mode_approaches_the_reference_as_the_tolerance_tightens():
    model, loss_of = small_problem()
    reference, *rows = gradient_errors(model, loss_of, {"method": "dopri5"}, tolerances=(1e-2, 1e-8))
    assert reference["mode"] == "reference" and reference["relative_error"] < 1e-8
    assert {row["mode"] for row in rows} == set(MODES)
    for mode in MODES:
        loose, tight = (row["relative_error"] for row in rows if row["mode"] == mode)
        assert tight < 1e-5 < loose, mode
        assert tight < loose / 100
    adjoint = {row["mode"]: row["nfe_backward"] for row in rows if row["tolerance"] == 1e-8}
    assert adjoint["adjoint_seminorm"] <= adjoint["adjoint"]


SMOKE = [
    "experiment=mnist5k_odenet_smoke",
    "model.channels=8",
    "train.max_iters=1",
    "dataset.test_fraction=0.02",
    "train.test_batch_size=100",
    "train.progress=false",
]


def trained(run_dir, *overrides):
    """A one-step ODE-Net run in ``run_dir``, trained through the command line."""
    assert main(["train", *SMOKE, *overrides, f"hydra.run.dir={run_dir}"]) == 0
    return run_dir


def test_the_command_writes_its_table_and_figure(tmp_path):
    run_dir = trained(tmp_path / "run")
    assert main(["gradcheck", str(run_dir), "--batch-size", "4", "--tolerances", "1e-3"]) == 0
    with open(run_dir / "gradcheck" / "gradcheck.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 + len(MODES)
    columns = {"mode", "tolerance", "relative_error", "nfe_forward", "nfe_backward", "seconds", "saved_tensors_mb"}
    assert set(rows[0]) == columns
    assert all(float(row["relative_error"]) < 0.5 for row in rows)
    assert rows[0]["mode"] == "reference" and all(row["mode"] in MODES for row in rows[1:])
    assert (run_dir / "gradcheck" / "gradcheck.png").stat().st_size > 10_000


def test_a_fixed_step_run_is_refused_in_one_line(tmp_path, capsys):
    run_dir = trained(tmp_path / "run", "solver=rk4", "solver.step_size=0.5")
    assert main(["gradcheck", str(run_dir)]) == 2
    assert "takes fixed steps" in capsys.readouterr().err
