"""Figure and tables of the gradient-mode study, from the runs run.sh wrote.

results/<model>/<k>/ each hold a run of the sweep (.hydra/config.yaml, summary.json, metrics.jsonl); seed 0's
runs also hold gradcheck/epoch<N>/gradcheck.csv, each gradient mode's error on that epoch's kept model.
Writes, per model:
- grad_modes_<model>.png: the test metric per epoch (mean ± std over seeds), one line per training mode, and
  the relative error of each mode's own gradient over training on its seed-0 model, beside the reference's
  own error;
- modes.md: per training mode the final metric, costs and memory (mean ± std), and the gradient errors.

    .venv/bin/python experiments/grad_modes/report.py experiments/grad_modes/results
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEADLINES = {"odenet": ("test_error", "test error (%)"), "latent_ode": ("test_rmse_extrap", "extrapolation RMSE")}
MODES = ("backprop", "adjoint", "checkpoint")
COSTS = {
    "nfe_forward": "NFE forward",
    "nfe_backward": "NFE backward",
    "saved_tensors_mb": "saved MB",
    "epoch_time_s": "s / epoch",
}


def load(model_dir: Path) -> dict[str, list[dict]]:
    """Per training mode, each completed run's seed, summary, per-epoch records and gradient checks."""
    modes: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for run in sorted(path for path in model_dir.iterdir() if (path / "summary.json").exists()):
        summary = json.loads((run / "summary.json").read_text())
        if summary.get("status") != "completed":
            continue
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        checks = {
            int(path.parent.name.removeprefix("epoch")): list(csv.DictReader(path.open()))
            for path in (run / "gradcheck").glob("epoch*/gradcheck.csv")
        }
        modes[config["grad"]["mode"]].append(
            {"seed": config["seed"], "summary": summary, "records": records, "checks": dict(sorted(checks.items()))}
        )
    return {mode: runs for mode, runs in modes.items() if runs}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def own_errors(run: dict, mode: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs, the training mode's own gradient error at each kept model, and the reference's own error."""
    epochs, errors, floors = [], [], []
    for epoch, rows in run["checks"].items():
        by_mode = {row["mode"]: float(row["relative_error"]) for row in rows}
        epochs.append(epoch)
        errors.append(by_mode[mode])
        floors.append(by_mode["reference"])
    return epochs, errors, floors


def plot(model: str, modes: dict[str, list[dict]], path: Path) -> None:
    key, label = HEADLINES[model]
    figure, (learning, gradients) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, runs in modes.items():
        evaluated = [[record for record in run["records"] if key in record] for run in runs]  # eval epochs
        epochs = min(len(records) for records in evaluated)
        per_epoch = [[records[i][key] for records in evaluated] for i in range(epochs)]
        means, stds = zip(*(mean_std(values) for values in per_epoch))
        x = [record["epoch"] for record in evaluated[0][:epochs]]
        (line,) = learning.plot(x, means, label=f"{mode} ({len(runs)} seeds)")
        lows, highs = [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)]
        learning.fill_between(x, lows, highs, color=line.get_color(), alpha=0.2)
        checked = [run for run in runs if run["checks"]]
        if checked:
            epochs_checked, errors, floors = own_errors(checked[0], mode)
            gradients.semilogy(epochs_checked, errors, "o-", color=line.get_color(), label=f"{mode}'s gradient")
            gradients.semilogy(epochs_checked, floors, ":", color=line.get_color(), alpha=0.6)
    learning.set(xlabel="epoch", ylabel=label, yscale="log", title=f"{model}: {label} over training (mean ± std)")
    gradients.set(
        xlabel="epoch (kept model)",
        ylabel="relative gradient error",
        title=f"{model}: each mode's own gradient error (seed 0)\ndotted: the reference's own error",
    )
    gradients.xaxis.get_major_locator().set_params(integer=True)
    for axes in (learning, gradients):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(model: str, modes: dict[str, list[dict]]) -> list[str]:
    key, label = HEADLINES[model]
    lines = [
        f"### {model}: by training mode (mean ± std over seeds; gradient error of the mode's own gradient on its "
        "seed-0 model at the run's tolerance, first and last kept epoch)",
        "",
        f"| mode | seeds | {label} | " + " | ".join(COSTS.values()) + " | gradient error (first → last) |",
        "|---|---|---|" + "---|" * len(COSTS) + "---|",
    ]
    for mode, runs in modes.items():
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in [mean_std([run["summary"][key] for run in runs])]]
        cells += ["{:.1f} ± {:.1f}".format(*mean_std([run["summary"][cost] for run in runs])) for cost in COSTS]
        checked = [run for run in runs if run["checks"]]
        errors = own_errors(checked[0], mode)[1] if checked else []
        cells.append(f"{errors[0]:.1e} → {errors[-1]:.1e}" if errors else "–")
        lines.append(f"| {mode} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(results: Path) -> None:
    lines = []
    for model in HEADLINES:
        if not (results / model).is_dir():
            continue
        modes = load(results / model)
        if not modes:
            continue
        plot(model, modes, results / f"grad_modes_{model}.png")
        lines += table(model, modes)
        print(f"wrote {results / f'grad_modes_{model}.png'}")
    (results / "modes.md").write_text("\n".join(lines))
    print(f"wrote {results / 'modes.md'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/grad_modes/results"))
