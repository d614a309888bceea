"""Figures and the target table of the regularisation study, from the runs run.sh wrote.

results/<model>/<variant>/seed<k>/ each hold a run (metrics.jsonl, summary.json). Writes, per model:
- nfe_<model>.png: forward NFE per training iteration (epoch mean) over training, and the final test metric
  against the test solve's NFE, mean ± std over seeds, one line or point per variant;
- targets.md: each variant against `none`: the end-of-training NFE ratio and the change of the test metric.

    .venv/bin/python experiments/regularization/report.py experiments/regularization/results
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEADLINES = {"odenet": ("test_error", "test error (%)"), "cnf": ("test_nll", "test NLL (nats)")}
TARGETS = {"odenet": "at most +0.3 points of test error", "cnf": "at most +0.05 nats of test NLL"}


def load(model_dir: Path) -> dict[str, list[dict]]:
    """Per variant, each completed seed's summary and its per-epoch records."""
    variants: dict[str, list[dict]] = {"none": []}  # the baseline first
    for run in sorted(model_dir.glob("*/seed*")):
        summary_path = run / "summary.json"
        if not summary_path.exists() or json.loads(summary_path.read_text()).get("status") != "completed":
            continue
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        variants.setdefault(run.parent.name, []).append(
            {"summary": json.loads(summary_path.read_text()), "records": records}
        )
    return variants


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(model: str, variants: dict[str, list[dict]], path: Path) -> None:
    key, label = HEADLINES[model]
    figure, (over_training, tradeoff) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, runs in variants.items():
        epochs = min(len(run["records"]) for run in runs)
        per_epoch = [[run["records"][i]["nfe_forward_mean"] for run in runs] for i in range(epochs)]
        means, stds = zip(*(mean_std(values) for values in per_epoch))
        x = range(1, epochs + 1)
        (line,) = over_training.plot(x, means, label=name)
        over_training.fill_between(
            x,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            color=line.get_color(),
            alpha=0.2,
        )
        nfe = mean_std([run["summary"]["test_nfe_forward_mean"] for run in runs])
        metric = mean_std([run["summary"][key] for run in runs])
        tradeoff.errorbar(
            nfe[0], metric[0], xerr=nfe[1], yerr=metric[1], fmt="o", capsize=3, label=name, color=line.get_color()
        )
    seeds = "–".join(str(n) for n in sorted({len(runs) for runs in variants.values()}))
    over_training.set(
        xlabel="epoch",
        ylabel="forward NFE per iteration (epoch mean)",
        title=f"{model}: forward NFE over training (mean ± std, {seeds} seeds)",
    )
    tradeoff.set(
        xlabel="forward NFE of the test solve (end of training)",
        ylabel=label,
        title=f"{model}: final {label} against NFE",
    )
    for axes in (over_training, tradeoff):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def targets(model: str, variants: dict[str, list[dict]]) -> list[str]:
    key, label = HEADLINES[model]
    base_nfe = mean_std([run["summary"]["test_nfe_forward_mean"] for run in variants["none"]])[0]
    base_train = mean_std([run["summary"]["nfe_forward"] for run in variants["none"]])[0]
    base_metric = mean_std([run["summary"][key] for run in variants["none"]])[0]
    lines = [
        f"### {model}: each variant against `none` (target: 2× fewer forward NFE, {TARGETS[model]})",
        "",
        "| variant | seeds | test-solve NFE | NFE ratio | training NFE (last epoch) | ratio | "
        f"{label} | change | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in variants.items():
        nfe = mean_std([run["summary"]["test_nfe_forward_mean"] for run in runs])
        train = mean_std([run["summary"]["nfe_forward"] for run in runs])
        metric = mean_std([run["summary"][key] for run in runs])
        limit = 0.3 if model == "odenet" else 0.05
        met = base_nfe / nfe[0] >= 2 and metric[0] - base_metric <= limit
        verdict = "–" if name == "none" else "yes" if met else "no"
        lines.append(
            f"| {name} | {len(runs)} | {nfe[0]:.1f} ± {nfe[1]:.1f} | {base_nfe / nfe[0]:.2f}× | "
            f"{train[0]:.1f} ± {train[1]:.1f} | {base_train / train[0]:.2f}× | {metric[0]:.3f} ± {metric[1]:.3f} | "
            f"{metric[0] - base_metric:+.3f} | {verdict} |"
        )
    return lines + [""]


def main(results: Path) -> None:
    lines = []
    for model in HEADLINES:
        variants = load(results / model)
        if not variants["none"]:
            continue
        plot(model, variants, results / f"nfe_{model}.png")
        lines += targets(model, variants)
        print(f"wrote {results / f'nfe_{model}.png'}")
    (results / "targets.md").write_text("\n".join(lines))
    print(f"wrote {results / 'targets.md'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/regularization/results"))
