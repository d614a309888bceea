"""Tables and figures of the stiff-training study: ``report.md`` with mean ± std over seeds per (eps, method)
and, per eps, ``training_<eps>.png``: the training loss against wall time and the forward evaluations per
step against the step, one line per method and seed.

    .venv/bin/python experiments/stiff/report.py experiments/stiff/results
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = [
    ("steps_trained", "Adam steps", "{:.0f}"),
    ("train_loss", "train MSE", "{:.4f}"),
    ("test_rmse", "test RMSE", "{:.4f}"),
    ("nfe_forward", "NFE forward / step", "{:.0f}"),
    ("nfe_backward", "NFE backward / step", "{:.0f}"),
    ("solver_steps", "solver steps", "{:.0f}"),
    ("jacobians", "Jacobians / step", "{:.0f}"),
    ("seconds_per_step", "s / Adam step", "{:.2f}"),
]


def spread(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(runs: list[dict]) -> list[str]:
    groups = defaultdict(list)
    for run in runs:
        groups[(run["eps"], run["method"])].append(run)
    lines = [
        "| eps | method | seeds | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---" * (3 + len(COLUMNS)) + "|",
    ]
    for (eps, method), group in sorted(groups.items(), key=lambda item: (-item[0][0], item[0][1])):
        cells = [spread([run[key] for run in group], fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {eps:g} | {method} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def figure(histories: dict[tuple, list[dict]], eps: float, out: Path) -> None:
    fig, (loss_ax, nfe_ax) = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"kvaerno5": "tab:blue", "radau5": "tab:green", "dopri5": "tab:red"}
    for (method, seed), rows in sorted(histories.items()):
        label = method if seed == 0 else None
        colour = colours.get(method, "black")
        loss_ax.plot([r["wall_time_s"] for r in rows], [r["loss"] for r in rows], color=colour, alpha=0.8, label=label)
        nfe_ax.plot([r["step"] for r in rows], [r["nfe_forward"] for r in rows], color=colour, alpha=0.8, label=label)
    loss_ax.set(
        xlabel="wall time (s)", ylabel="training MSE", xscale="log", yscale="log", title=f"training loss, eps = {eps:g}"
    )
    nfe_ax.set(xlabel="Adam step", ylabel="forward evaluations", yscale="log", title="forward NFE per step")
    for ax in (loss_ax, nfe_ax):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(results: Path) -> None:
    runs, histories = [], defaultdict(dict)
    for summary_path in sorted(results.glob("eps*/*/seed*/summary.json")):
        run = json.loads(summary_path.read_text())
        run["eps"] = json.loads((summary_path.parent / "config.json").read_text())["eps"]
        runs.append(run)
        with open(summary_path.parent / "history.csv") as handle:
            rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
        histories[run["eps"]][(run["method"], run["seed"])] = rows
    report = ["# Stiff training: mean ± std over seeds", "", *table(runs), ""]
    failed = [
        f"- eps {r['eps']:g}, {r['method']}, seed {r['seed']}: {r['status']}"
        for r in runs
        if r["status"] != "completed"
    ]
    report += ["Runs that did not complete:", *failed, ""] if failed else []
    (results / "report.md").write_text("\n".join(report))
    print("\n".join(report))
    for eps, by_run in histories.items():
        path = results / f"training_eps{eps:g}.png"
        figure(by_run, eps, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/stiff/results"))
