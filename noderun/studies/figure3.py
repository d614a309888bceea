"""The paper's Figure 3 from a trained ODE-Net: (a) NFE vs error, (b) NFE vs time, (c) backward vs
forward NFE, (d) NFE over training. PNGs (matplotlib, Agg) and the numbers behind them (CSV)."""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..log.files import read_metrics, write_csv
from ..log.progress import WorkProgress
from ..models.ode_block import ODEBlock, ode_blocks
from ..odeint import odeint
from .trained_run import TrainedRun, load_trained_run

TOLERANCES = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def block_input(run: TrainedRun, block: ODEBlock) -> torch.Tensor:
    """The state the ODE block starts from for the run's test batch."""
    captured = {}
    handle = block.register_forward_pre_hook(lambda module, args: captured.setdefault("h0", args[0].detach()))
    with torch.no_grad():
        run.model(run.images)
    handle.remove()
    return captured["h0"]


def reference_solution(block: ODEBlock, h0: torch.Tensor) -> torch.Tensor:
    """A much tighter solve in float64: dopri8 at tolerance 1e-8 (1000 times below the tightest swept)."""
    func = copy.deepcopy(block.func).double()
    with torch.no_grad():
        return odeint(
            func,
            h0.double(),
            block.t.double(),
            method="dopri8",
            rtol=1e-8,
            atol=1e-8,
            options={"max_num_steps": 100_000},
        )[-1]


def measure_tolerance(
    run: TrainedRun, block: ODEBlock, h0: torch.Tensor, reference: torch.Tensor, tol: float, repeats: int
) -> dict[str, float]:
    """Forward NFE, error and time of the block's solve at ``tol``; NFE of a full adjoint training step."""
    block.solver = dataclasses.replace(
        block.solver, method="dopri5", rtol=tol, atol=tol, grad="adjoint", adjoint_options=None
    )
    seconds = []
    with torch.no_grad():
        for _ in range(repeats):
            block.stats.reset()
            started = time.perf_counter()
            h1 = block(h0)
            seconds.append(time.perf_counter() - started)
    nfe_forward = block.stats.nfe_forward
    error = (h1.double() - reference).pow(2).mean().sqrt().item()
    block.stats.reset()
    F.cross_entropy(run.model(run.images), run.labels).backward()
    return {
        "tolerance": tol,
        "nfe_forward": nfe_forward,
        "error_rms": error,
        "forward_time_s": statistics.median(seconds),
        "train_nfe_forward": block.stats.nfe_forward,
        "train_nfe_backward": block.stats.nfe_backward,
    }


def plot_panels(sweep: list[dict], training: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfe = [row["nfe_forward"] for row in sweep]
    panels = [
        (
            "figure3a_nfe_vs_error.png",
            [row["error_rms"] for row in sweep],
            nfe,
            "numerical error (RMS, vs dopri8 1e-8)",
            "NFE forward",
            "log",
        ),
        (
            "figure3b_nfe_vs_time.png",
            nfe,
            [row["forward_time_s"] for row in sweep],
            "NFE forward",
            "forward time (s)",
            "linear",
        ),
        (
            "figure3c_backward_vs_forward.png",
            [row["train_nfe_forward"] for row in sweep],
            [row["train_nfe_backward"] for row in sweep],
            "NFE forward",
            "NFE backward (adjoint)",
            "linear",
        ),
    ]
    paths = []
    for name, x, y, xlabel, ylabel, xscale in panels:
        figure, axes = plt.subplots(figsize=(4.5, 3.5))
        axes.plot(x, y, "o-")
        if name.startswith("figure3c"):
            low, high = min(x + y), max(x + y)
            axes.plot([low, high], [low, high], "--", color="grey", label="backward = forward")
            axes.legend()
        axes.set_xscale(xscale)
        axes.set(xlabel=xlabel, ylabel=ylabel)
        figure.tight_layout()
        figure.savefig(out / name, dpi=120)
        plt.close(figure)
        paths.append(out / name)
    figure, axes = plt.subplots(figsize=(4.5, 3.5))
    epochs = [row["epoch"] for row in training]
    axes.plot(epochs, [row["nfe_forward_mean"] for row in training], "o-", label="forward")
    axes.plot(epochs, [row["nfe_backward_mean"] for row in training], "s-", label="backward")
    axes.set(xlabel="training epoch", ylabel="NFE per iteration (mean)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / "figure3d_nfe_over_training.png", dpi=120)
    plt.close(figure)
    return paths + [out / "figure3d_nfe_over_training.png"]


def figure3(
    path_or_dir: str,
    out: str | None = None,
    batch_size: int = 128,
    tolerances: tuple[float, ...] = TOLERANCES,
    repeats: int = 3,
) -> list[Path]:
    """Write Figure 3's four panels and CSVs for the run at ``path_or_dir``; return the PNG paths."""
    run = load_trained_run(path_or_dir, batch_size)
    blocks = ode_blocks(run.model)
    if not blocks:
        raise ValueError(
            f"{path_or_dir}: the model {type(run.model).__name__} has no ODE block; Figure 3 needs an ODE-Net"
        )
    out_dir = Path(out) if out else run.directory / "figure3"
    out_dir.mkdir(parents=True, exist_ok=True)
    block = blocks[0]
    h0 = block_input(run, block)
    sweep = []
    with WorkProgress("figure 3", 1 + len(tolerances)) as progress:
        reference = reference_solution(block, h0)
        progress.advance("reference solved")
        for tol in tolerances:
            sweep.append(measure_tolerance(run, block, h0, reference, tol, repeats))
            progress.advance(f"tolerance {tol:g} measured")
    keys = ("epoch", "step", "nfe_forward_mean", "nfe_backward_mean")
    training = [{key: row[key] for key in keys} for row in read_metrics(run.directory)]
    if not training:
        raise ValueError(f"{run.directory}: no metrics.jsonl records for panel (d)")
    write_csv(out_dir / "figure3_tolerance_sweep.csv", sweep)
    write_csv(out_dir / "figure3_training.csv", training)
    return plot_panels(sweep, training, out_dir)
