"""How close each gradient mode's gradient is to the true gradient of a trained run's loss.

On a fixed batch of the run's test data, in float64, the loss's gradient with respect to every parameter
is computed by backprop, the adjoint (with and without the seminorm) and checkpointing, with the run's
solver method across a ladder of tolerances, and compared with a reference: the gradient at a tight
tolerance (dopri5 at 1e-10, ``grad="checkpoint"``, which gives backprop's gradient of that nearly exact solve
without storing its graph). Each row has the relative error ``‖g − g_ref‖ / ‖g_ref‖``, NFE, seconds and the
bytes saved for the backward pass. The reference's own error is estimated by the same gradient at a ten
times looser tolerance: errors below it are not resolved. (Dynamics with kinks, such as ReLU networks,
converge slowly in their gradient; a higher-order reference method would take far smaller steps there.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..log.files import write_csv
from ..solvers.method import SolveMethod
from ..solvers.methods import get_method
from ..solvers.settings import SolverSettings
from ..train.build import build_task
from ..train.failures import solver_swapped
from ..train.meter import IterationMeter
from .trained_run import load_trained_model

MODES = {
    "backprop": {"mode": "backprop"},
    "adjoint": {"mode": "adjoint"},
    "adjoint_seminorm": {"mode": "adjoint", "seminorm": True},
    "checkpoint": {"mode": "checkpoint"},
}
TOLERANCES = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
REFERENCE = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}

LossOf = Callable[[nn.Module], Tensor]


def metered_gradient(model: nn.Module, loss_of: LossOf, seed: int = 0) -> tuple[Tensor, dict[str, float]]:
    """The flat gradient of ``loss_of(model)`` over ``model``'s parameters (zeros for those it does not
    reach), with the iteration's NFE, seconds and saved bytes. Random draws inside the loss (a latent ODE's
    reparameterisation) are the same on every call: the generator is seeded with ``seed`` first."""
    torch.manual_seed(seed)
    meter = IterationMeter(model, next(model.parameters()).device)
    model.zero_grad(set_to_none=True)
    with meter.forward():
        loss = loss_of(model)
    meter.backward(loss)
    record = meter.finish()
    gradient = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()]
    )
    model.zero_grad(set_to_none=True)
    return gradient.detach(), record


def gradient_with(model: nn.Module, loss_of: LossOf, settings: SolverSettings) -> tuple[Tensor, dict[str, float]]:
    """``metered_gradient`` with every ODE block of ``model`` solving with ``settings``."""
    with solver_swapped(model, settings):
        return metered_gradient(model, loss_of)


def reference_gradient(model: nn.Module, loss_of: LossOf, looser: float = 1.0) -> Tensor:
    """The gradient of the nearly exact solve (``REFERENCE``, checkpointed; tolerances times ``looser``)."""
    tolerance = REFERENCE["rtol"] * looser
    settings = SolverSettings(REFERENCE["method"], tolerance, tolerance, grad="checkpoint")
    return gradient_with(model, loss_of, settings)[0]


def relative_error(gradient: Tensor, reference: Tensor) -> float:
    """``‖g − g_ref‖ / ‖g_ref‖``; the absolute error where the reference is zero (a loss at a stationary point)."""
    size = torch.linalg.vector_norm(reference)
    return float(torch.linalg.vector_norm(gradient - reference) / (size if size > 0 else 1.0))


def gradient_errors(
    model: nn.Module,
    loss_of: LossOf,
    solver: Mapping[str, Any],
    tolerances: tuple[float, ...] = TOLERANCES,
    modes: tuple[str, ...] = tuple(MODES),
) -> list[dict[str, Any]]:
    """One row per mode and tolerance: the gradient's relative error against the reference, NFE, seconds and
    saved MB (the ``solver`` config node, a run's, with ``rtol = atol = tolerance``); first a row ``reference``
    with the reference's estimated error (against the reference at ten times its tolerance)."""
    reference = reference_gradient(model, loss_of)
    check = reference_gradient(model, loss_of, looser=10.0)
    rows = [
        {
            "mode": "reference",
            "tolerance": REFERENCE["rtol"] * 10,
            "relative_error": relative_error(check, reference),
            "nfe_forward": None,
            "nfe_backward": None,
            "seconds": None,
            "saved_tensors_mb": None,
        }
    ]
    for tolerance in tolerances:
        for mode in modes:
            settings = SolverSettings.from_config({**solver, "rtol": tolerance, "atol": tolerance}, MODES[mode])
            gradient, record = gradient_with(model, loss_of, settings)
            rows.append(
                {
                    "mode": mode,
                    "tolerance": tolerance,
                    "relative_error": relative_error(gradient, reference),
                    "nfe_forward": record["nfe_forward"],
                    "nfe_backward": record["nfe_backward"],
                    "seconds": record["seconds"],
                    "saved_tensors_mb": record["saved_tensors_mb"],
                }
            )
    return rows


def run_loss(path_or_dir: str | Path, batch_size: int) -> tuple[nn.Module, LossOf, dict[str, Any]]:
    """A trained run's model in float64 (evaluation mode: no regulariser, no jitter, exact traces), its
    task's loss on the first ``batch_size`` test samples, and its solver config node."""
    trained = load_trained_model(path_or_dir)
    solver = cast(dict[str, Any], OmegaConf.to_container(trained.config.solver, resolve=True))  # a mapping
    method = get_method(solver["method"])
    if not method.adaptive or isinstance(method, SolveMethod):
        raise ConfigError(
            f"{path_or_dir}: solver {solver['method']!r} "
            + ("hands the problem to SciPy" if method.adaptive else "takes fixed steps")
            + ", and this study sweeps noderun's tolerances in every grad mode; accepted: a run trained with an "
            "adaptive noderun method (dopri5, tsit5, bosh3, kvaerno5, ...)"
        )
    task = build_task(trained.config, trained.data.info)
    batch = next(iter(DataLoader(trained.data.test, batch_size=batch_size)))
    batch = (
        {key: value.double() if value.is_floating_point() else value for key, value in batch.items()}
        if isinstance(batch, dict)
        else [part.double() if part.is_floating_point() else part for part in batch]
    )
    model = trained.model.double()
    return model, (lambda m: task.loss(m, batch)[0]), solver


def gradcheck(
    path_or_dir: str | Path,
    out: str | Path | None = None,
    batch_size: int = 32,
    tolerances: tuple[float, ...] = TOLERANCES,
) -> list[Path]:
    """``gradcheck.csv``, ``gradcheck.md`` and ``gradcheck.png`` for a trained run (default: RUN/gradcheck)."""
    model, loss_of, solver = run_loss(path_or_dir, batch_size)
    rows = gradient_errors(model, loss_of, solver, tolerances)
    run_dir = Path(path_or_dir) if Path(path_or_dir).is_dir() else Path(path_or_dir).parent
    out_dir = Path(out) if out is not None else run_dir / "gradcheck"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "gradcheck.csv", rows)
    (out_dir / "gradcheck.md").write_text(markdown(rows, solver["method"], batch_size))
    plot(rows, solver["method"], out_dir / "gradcheck.png")
    return [out_dir / "gradcheck.csv", out_dir / "gradcheck.md", out_dir / "gradcheck.png"]


def markdown(rows: list[dict[str, Any]], method: str, batch_size: int) -> str:
    reference = ", ".join(f"{key} {value}" for key, value in REFERENCE.items())
    floor = rows[0]["relative_error"]
    lines = [
        f"Gradient error of each mode ({method}, rtol = atol = tolerance, float64, {batch_size} test samples) "
        f"against the reference ({reference}, checkpointed). The reference's own error, estimated against "
        f"its solve at ten times the tolerance, is {floor:.2e}: smaller errors are not resolved.",
        "",
        "| mode | tolerance | relative error | NFE forward | NFE backward | seconds | saved MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows[1:]:
        lines.append(
            f"| {row['mode']} | {row['tolerance']:.0e} | {row['relative_error']:.2e} | {row['nfe_forward']} | "
            f"{row['nfe_backward']} | {row['seconds']:.3f} | {row['saved_tensors_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_tolerance, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    floor, rows = rows[0]["relative_error"], rows[1:]
    for axes in (by_tolerance, by_time):
        axes.axhline(max(floor, 1e-16), color="grey", linestyle=":", label="reference's own error")
    for mode in dict.fromkeys(row["mode"] for row in rows):
        mine = [row for row in rows if row["mode"] == mode]
        errors = [max(row["relative_error"], 1e-16) for row in mine]
        by_tolerance.loglog([row["tolerance"] for row in mine], errors, "o-", label=mode)
        by_time.loglog([row["seconds"] for row in mine], errors, "o-", label=mode)
    by_tolerance.set(
        xlabel="solver tolerance (rtol = atol)",
        ylabel="relative gradient error",
        title=f"gradient error against tolerance ({method})",
    )
    by_time.set(
        xlabel="seconds (forward + backward)", ylabel="relative gradient error", title="gradient error against time"
    )
    by_tolerance.invert_xaxis()
    for axes in (by_tolerance, by_time):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
