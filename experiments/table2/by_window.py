"""Extrapolation RMSE of trained Table 2 runs split by where the spiral's window starts on its curve.

The authors' generator draws a window's start from [100, 800) of the curve's 1,000 points, so no training
window reaches past point 898, while the 100 points extrapolated after a window starting at 700-799 run
up to point 999 - where the clockwise spiral's radius grows from 5 to 15. This splits each run's
test_rmse_extrap by start (100-699 against 700-799) and writes one CSV row per run.

    .venv/bin/python experiments/table2/by_window.py experiments/table2/results/sweep/*/ --out by_window.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from noderun.studies.trained_run import load_trained_model

LATE_START = 700  # windows starting here extrapolate past every training window


def split_rmse(run_dir: str) -> dict[str, object]:
    trained = load_trained_model(run_dir)
    spirals = instantiate(trained.config.dataset)
    spirals.load()  # the same draws: window starts in generation order, test split first
    batch = next(iter(DataLoader(trained.data.test, batch_size=len(trained.data.test))))
    with torch.no_grad():
        squared = (trained.model.predict(batch) - batch["truth"]).pow(2)[:, spirals.n_points :]
    late = spirals.window_start[: len(squared)] >= LATE_START
    rmse = {
        name: squared[rows].mean().sqrt().item()
        for name, rows in (("all", slice(None)), ("early", ~late), ("late", late))
    }
    overrides = OmegaConf.load(Path(run_dir) / ".hydra" / "overrides.yaml")
    experiment = next((item.split("=", 1)[1] for item in overrides if item.startswith("experiment=")), "")
    return {
        "run": run_dir,
        "experiment": experiment,
        "n_obs": trained.config.dataset.n_obs,
        "seed": trained.config.seed,
        "test_rmse_extrap": rmse["all"],
        "starts_100_699": rmse["early"],
        "starts_700_799": rmse["late"],
        "late_spirals": int(late.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default="by_window.csv")
    args = parser.parse_args()
    rows = [split_rmse(run) for run in args.runs]
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
