"""The paper's Figures 4–6 from trained flow runs (``cnf`` or ``planar_nf``): data or target density
beside the learned density and the model's samples, and base samples carried through the flow at
5, 20, 40, 60, 80 and 100% of its time (of its layers, for a planar flow). PNGs with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from ..log.progress import WorkProgress
from .trained_run import TrainedModel, load_trained_model

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset

    from ..models.cnf import CNF
    from ..models.planar_nf import PlanarNF

EXTENT = 2.0  # every toy shape lies well inside [-2, 2]²
FRACTIONS = [0.05, 0.2, 0.4, 0.6, 0.8, 1.0]


def grid(points: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-EXTENT, EXTENT, points)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    return xx, torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def title(trained: TrainedModel) -> str:
    model = trained.config.model
    size = f"M={model.width}" if "width" in model else f"K={model.layers}"
    task = "KL" if trained.config.task["_target_"].endswith("DensityMatching") else "ML"
    return f"{model['_target_'].rsplit('.', 1)[-1]} {size}, {trained.config.dataset.name} ({task})"


def density_row(axes, trained: TrainedModel) -> None:
    xx, points = grid()
    model = cast("CNF | PlanarNF", trained.model)  # the model of a flow run
    with torch.no_grad():
        learned = model.log_prob(points).exp().reshape(xx.shape)
        target = trained.data.info["log_density"](points).exp().reshape(xx.shape)
        samples, _ = model.sample_with_log_prob(5000, points, torch.Generator().manual_seed(0))
    data = cast("TensorDataset", trained.data.test).tensors[0]  # the toy 2-D data's splits
    panels = [
        ("data density", target, None),
        ("learned density", learned, None),
        ("data samples", None, data),
        ("model samples", None, samples),
    ]
    for ax, (name, density, scatter) in zip(axes, panels):
        if density is not None:
            ax.imshow(density.numpy(), origin="lower", extent=[-EXTENT, EXTENT, -EXTENT, EXTENT], cmap="viridis")
        else:
            ax.hist2d(
                scatter[:, 0].numpy(),
                scatter[:, 1].numpy(),
                bins=100,
                range=[[-EXTENT, EXTENT], [-EXTENT, EXTENT]],
                cmap="viridis",
            )
        ax.set_title(name, fontsize=9)


def transport_row(axes, trained: TrainedModel) -> None:
    model = cast("CNF | PlanarNF", trained.model)  # the model of a flow run
    like = cast("TensorDataset", trained.data.test).tensors[0]  # the toy 2-D data's splits
    z0 = model.base.sample(3000, like, torch.Generator().manual_seed(0))
    stages = [z0, *model.transport(z0, FRACTIONS)]
    colour = torch.atan2(z0[:, 1], z0[:, 0]).numpy()  # each sample keeps its base angle's colour
    for ax, fraction, points in zip(axes, [0.0, *FRACTIONS], stages):
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=colour, s=1, cmap="hsv")
        ax.set_title(f"{fraction:.0%} of the flow", fontsize=9)
        ax.set_xlim(-EXTENT, EXTENT)
        ax.set_ylim(-EXTENT, EXTENT)


def flow_figures(runs: list[str], out: str | Path) -> list[Path]:
    """``flow_densities.png`` and ``flow_transport.png`` in ``out``, one row per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trained = [load_trained_model(run) for run in runs]
    paths = []
    figures = [("flow_densities.png", 4, density_row), ("flow_transport.png", 1 + len(FRACTIONS), transport_row)]
    with WorkProgress("flow figures", len(figures) * len(trained)) as progress:
        for name, columns, draw in figures:
            paths.append(draw_figure(plt, out / name, columns, draw, trained, progress))
    return paths


def draw_figure(plt, path: Path, columns: int, draw, trained: list[TrainedModel], progress: WorkProgress) -> Path:
    """One figure, a row per run drawn by ``draw``."""
    figure, axes = plt.subplots(len(trained), columns, figsize=(2.2 * columns, 2.4 * len(trained)), squeeze=False)
    for row, model in zip(axes, trained):
        draw(row, model)
        row[0].set_ylabel(title(model), fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
        progress.advance(f"{path.name}: {title(model).splitlines()[0]}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
