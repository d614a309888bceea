"""Memory against depth: one training iteration at 1×, 2×, 4×, 8× the integration length (ODE-Net,
each gradient mode) or the number of residual blocks (ResNet), with the bytes saved for backward."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.mnist import MNIST5k
from ..log.files import write_csv
from ..models.odenet import ODENet
from ..models.resnet import ResNet
from ..solvers.settings import GRAD_MODES, SolverSettings
from ..train.meter import IterationMeter


def one_iteration(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Forward and backward once, metered as a training iteration (saved bytes, NFE, CUDA peak)."""
    meter = IterationMeter(model, images.device)
    with meter.forward():
        loss = F.cross_entropy(model(images), labels)
    meter.backward(loss)
    record = meter.finish()
    timings = ("seconds", "forward_s", "backward_s")  # this study is about memory
    return {key: value for key, value in record.items() if key not in ("steps_accepted", "steps_rejected", *timings)}


def memory_depth(
    out: str,
    multiples: tuple[int, ...] = (1, 2, 4, 8),
    batch_size: int = 32,
    step_size: float = 0.25,
    device: str = "cpu",
) -> list[dict]:
    """Rows of (model, grad, multiple, depth, saved MB, NFE); also memory_depth.csv and .png in ``out``."""
    data = MNIST5k(augment=False).load()
    images, labels = zip(*(data.train[i] for i in range(batch_size)))
    images, labels = torch.stack(images).to(device), torch.as_tensor(labels).to(device)
    rows = []
    for multiple in multiples:
        for grad in GRAD_MODES:
            torch.manual_seed(0)
            solver = SolverSettings(method="rk4", options={"step_size": step_size}, grad=grad)
            model = ODENet((1, 28, 28), 10, solver, integration_time=float(multiple)).to(device)
            rows.append(
                {
                    "model": "odenet (rk4)",
                    "grad": grad,
                    "multiple": multiple,
                    "depth": f"{round(multiple / step_size)} steps",
                    **one_iteration(model, images, labels),
                }
            )
        torch.manual_seed(0)
        model = ResNet((1, 28, 28), 10, blocks=6 * multiple).to(device)
        rows.append(
            {
                "model": "resnet",
                "grad": "backprop",
                "multiple": multiple,
                "depth": f"{6 * multiple} blocks",
                **one_iteration(model, images, labels),
            }
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "memory_depth.csv", rows)
    plot(rows, out_dir / "memory_depth.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.8))
    for model, grad in dict.fromkeys((row["model"], row["grad"]) for row in rows):
        series = [row for row in rows if (row["model"], row["grad"]) == (model, grad)]
        axes.plot(
            [row["multiple"] for row in series],
            [row["saved_tensors_mb"] for row in series],
            "o-",
            label=f"{model}, {grad}",
        )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set(xlabel="depth multiple (integration length or blocks)", ylabel="activations saved for backward (MB)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
