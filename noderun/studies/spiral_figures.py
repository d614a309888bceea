"""The paper's Figures 8 and 9 from trained spiral runs: reconstructions and extrapolations of the RNN
and the latent ODE on the same test trajectories, latent paths in 2-D, and decodings along one latent
dimension. PNGs with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch.utils.data import DataLoader

from ..train.checkpoint import find_checkpoint
from .trained_run import load_trained_model

if TYPE_CHECKING:
    from ..models.latent_ode import LatentODE
    from ..models.rnn import GridRNN


def load_model_and_test_batch(run: str, size: int):
    trained = load_trained_model(run)
    return trained.model, next(iter(DataLoader(trained.data.test, batch_size=size)))


def turning_direction(truth: torch.Tensor) -> torch.Tensor:
    """+1 counter-clockwise, -1 clockwise, from the sign of x dy - y dx along each path ``(B, T, 2)``."""
    step = truth[:, 1:] - truth[:, :-1]
    return torch.sign((truth[:, :-1, 0] * step[..., 1] - truth[:, :-1, 1] * step[..., 0]).sum(1))


def figure8(latent_ode_run: str, rnn_run: str, out: Path, examples: int = 4) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latent_ode, batch = load_model_and_test_batch(latent_ode_run, 200)
    rnn, rnn_batch = load_model_and_test_batch(rnn_run, 200)
    latent_ode, rnn = cast("LatentODE", latent_ode), cast("GridRNN", rnn)  # the models of the two runs
    if not torch.equal(batch["truth"], rnn_batch["truth"]):
        raise ValueError("the two runs were trained on different spirals (dataset settings or seed differ)")
    with torch.no_grad():
        predictions = {"latent ODE": latent_ode.predict(batch), "RNN": rnn.predict(batch)}
        mean, _ = latent_ode.encoder(batch["times"][0, : batch["mask"].shape[1]], batch["values"], batch["mask"])
        latent_path, _ = latent_ode.decode_path(mean, batch["times"][0])
    window = batch["mask"].shape[1]
    figure, axes = plt.subplots(2, examples, figsize=(3.2 * examples, 6.4))
    for row, (name, prediction) in enumerate(predictions.items()):
        for i in range(examples):
            ax = axes[row, i]
            observed = batch["values"][i][batch["mask"][i]]
            ax.plot(*batch["truth"][i].T, color="lightgrey", label="truth")
            ax.plot(*prediction[i, :window].T, color="tab:blue", label="reconstruction")
            ax.plot(*prediction[i, window - 1 :].T, color="tab:red", label="extrapolation")
            ax.scatter(*observed.T, s=8, color="black", label="observed")
            ax.set_title(f"{name}, test spiral {i}", fontsize=9)
            ax.set_aspect("equal")
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    paths = [out / "figure8_reconstructions.png"]
    figure.savefig(paths[0], dpi=110)
    plt.close(figure)
    figure, ax = plt.subplots(figsize=(4.5, 4.2))
    direction = turning_direction(batch["truth"])
    for i in range(len(direction)):
        ax.plot(*latent_path[i, :, :2].T, color="tab:orange" if direction[i] > 0 else "tab:purple", alpha=0.4)
    ax.set(
        title="latent paths (first two dimensions)\norange: counter-clockwise, purple: clockwise",
        xlabel="z1",
        ylabel="z2",
    )
    figure.tight_layout()
    paths.append(out / "figure8_latent_paths.png")
    figure.savefig(paths[1], dpi=110)
    plt.close(figure)
    return paths


def figure9(latent_ode_run: str, out: Path, steps: int = 7) -> Path:
    """Decodings of one test spiral's z0 with its most varied latent dimension swept across ±2 std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, batch = load_model_and_test_batch(latent_ode_run, 200)
    model = cast("LatentODE", model)  # the model of a latent ODE run
    times = batch["times"][0]
    with torch.no_grad():
        means, _ = model.encoder(times[: batch["mask"].shape[1]], batch["values"], batch["mask"])
        dim = int(means.std(0).argmax())
        spread = means[:, dim].std()
        z0 = means[:1].repeat(steps, 1)
        z0[:, dim] = means[:, dim].mean() + torch.linspace(-2, 2, steps) * spread
        _, decoded = model.decode_path(z0, times)
    figure, ax = plt.subplots(figsize=(4.8, 4.5))
    colours = plt.cm.viridis(torch.linspace(0, 1, steps).numpy())
    for k in range(steps):
        ax.plot(*decoded[k].T, color=colours[k], label=f"z{dim + 1} = {z0[k, dim]:.2f}")
    ax.set(title=f"decodings while varying z{dim + 1}", aspect="equal")
    ax.legend(fontsize=7)
    figure.tight_layout()
    path = out / "figure9_latent_sweep.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def spiral_figures(latent_ode_run: str, rnn_run: str, out: str) -> list[Path]:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in (latent_ode_run, rnn_run):  # a clear error before any work
        find_checkpoint(run)
    return figure8(latent_ode_run, rnn_run, out_dir) + [figure9(latent_ode_run, out_dir)]
