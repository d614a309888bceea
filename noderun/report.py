"""``noderun report DIR``: every run under DIR as a table (rich on the console, report.md, report.csv); with
``--group-by KEY[,KEY...]``, one row per combination of their values in report_by_KEY.md and .csv beside them;
with ``--plot X Y [--hue KEY]``, a figure beside them (report_plot.py)."""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from .log.files import SUMMARY_NAME, write_csv

STANDARD_METRICS = ["params", "nfe_forward", "nfe_backward", "peak_memory_mb", "epoch_time_s"]
IDENTITY_FIELDS = ["task", "dataset", "model", "solver", "grad", "rtol", "atol", "step_size", "seed"]


@dataclass
class RunRecord:
    """One run directory: its summary (if it wrote one), its command-line overrides and flattened config."""

    path: Path
    summary: dict[str, Any]
    overrides: dict[str, str]
    config: dict[str, Any]

    def get(self, key: str) -> Any:
        for source in (self.summary, self.overrides, self.config):
            if key in source:
                return source[key]
        return None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def natural_order(path: Path) -> list[Any]:
    """A sort key that orders numbered folders as numbers: a sweep's job 2 before its job 10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]


def load_runs(directory: Path) -> list[RunRecord]:
    """Every directory under ``directory`` with a summary.json or a Hydra config, in path order with numbers
    compared as numbers (a sweep's jobs in the order it ran them)."""
    run_dirs = {p.parent for p in directory.rglob(SUMMARY_NAME)}
    run_dirs |= {p.parent.parent for p in directory.rglob(".hydra/config.yaml")}
    runs = []
    for run_dir in sorted(run_dirs, key=natural_order):
        summary_path, config_path = run_dir / SUMMARY_NAME, run_dir / ".hydra" / "config.yaml"
        summary = read_summary(summary_path)
        config = read_config(config_path)
        runs.append(RunRecord(run_dir, summary, read_overrides(run_dir), config))
    return runs


def read_summary(path: Path) -> dict[str, Any]:
    """The run's summary; a status saying why when it is missing or cannot be read (the run is still listed)."""
    if not path.exists():
        return {"status": "no summary"}
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        print(
            f"noderun report: {path.parent}: unreadable summary.json ({error}); listed without its numbers",
            file=sys.stderr,
        )
        return {"status": "unreadable summary"}
    return summary if isinstance(summary, dict) else {"status": "unreadable summary"}


def read_config(path: Path) -> dict[str, Any]:
    """The run's Hydra config, flattened; empty when it is missing or cannot be read."""
    if not path.exists():
        return {}
    try:
        # Hydra writes a mapping; a hand-edited file that is not one fails in flatten, caught below
        return flatten(cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(path), resolve=True)))
    except Exception as error:  # a torn or hand-edited file: list the run without its config
        print(f"noderun report: {path}: unreadable config ({type(error).__name__}); listed without it", file=sys.stderr)
        return {}


def read_overrides(run_dir: Path) -> dict[str, str]:
    """``key=value`` command-line overrides of a Hydra run (``+``/``++`` prefixes dropped)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    items = cast(Iterable[str], OmegaConf.load(path))  # Hydra writes the overrides as a list of strings
    pairs = (item.lstrip("+~").split("=", 1) for item in items if "=" in item)
    return {key: value for key, value in pairs}


def varying_keys(runs: list[RunRecord]) -> list[str]:
    """The sweep's axes: overrides, then the summary's identity fields, whose values differ between runs."""
    candidates = sorted({key for run in runs for key in run.overrides}) + IDENTITY_FIELDS
    keys = [
        key for key in dict.fromkeys(candidates) if len({json.dumps(run.get(key), default=str) for run in runs}) > 1
    ]
    return keys


def metric_keys(runs: list[RunRecord], requested: str | None) -> list[str]:
    if requested:
        return [key.strip() for key in requested.split(",") if key.strip()]
    headlines = sorted({run.summary["headline"] for run in runs if "headline" in run.summary})
    return ["status", *headlines, *STANDARD_METRICS]


def run_rows(runs: list[RunRecord], directory: Path, columns: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    return [
        {"run": str(run.path.relative_to(directory)) or ".", **{key: run.get(key) for key in columns + metrics}}
        for run in runs
    ]


def grouped_rows(runs: list[RunRecord], group_by: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per combination of the ``group_by`` keys' values, in order of first appearance: numeric
    metrics as mean ± std over the group's runs, other values counted."""
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(tuple(str(run.get(key)) for key in group_by), []).append(run)
    return [
        {
            **dict(zip(group_by, values)),
            "runs": len(members),
            **{key: aggregate([run.get(key) for run in members]) for key in metrics},
        }
        for values, members in groups.items()
    ]


def aggregate(values: list[Any]) -> str:
    """``mean ± std`` when every value is a number (the sample std; none for one value), blank when none is
    set (a metric these runs do not have), else the values counted."""
    if all(v is None for v in values):
        return ""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        spread = f" ± {statistics.stdev(numbers):.3g}" if len(numbers) > 1 else ""
        return f"{statistics.mean(numbers):.4g}{spread}"
    counts = {str(v): values.count(v) for v in values}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_markdown(path: Path, rows: list[dict[str, Any]]) -> None:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(row[key]) for key in header) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")


def file_name(text: str) -> str:
    """``text`` with the characters unfit for a file name as ``_``."""
    return re.sub(r"[^\w.-]", "_", text)


def report_name(group_by: str | None) -> str:
    """``report``, or ``report_by_<key>`` for a grouped report."""
    return "report" if not group_by else "report_by_" + file_name(group_by)


def report_command(
    directory: str,
    group_by: str | None = None,
    metrics: str | None = None,
    plot: list[str] | None = None,
    hue: str | None = None,
) -> int:
    root = Path(directory)
    runs = load_runs(root) if root.is_dir() else []
    if not runs:
        print(f"noderun report: no runs (summary.json or .hydra/config.yaml) under {root.resolve()}", file=sys.stderr)
        return 1
    metric_names = metric_keys(runs, metrics)
    if group_by:
        rows = grouped_rows(runs, [key.strip() for key in group_by.split(",") if key.strip()], metric_names)
    else:
        rows = run_rows(runs, root, [key for key in varying_keys(runs) if key not in metric_names], metric_names)
    table = Table(title=f"{len(runs)} runs under {root}")
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(format_cell(value) for value in row.values()))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    name = report_name(group_by)
    write_markdown(root / f"{name}.md", rows)
    write_csv(root / f"{name}.csv", rows)
    print(f"wrote {root / name}.md and {root / name}.csv")
    if plot:
        from .report_plot import plot_runs

        x, y = plot
        figure_name = f"plot_{y}_vs_{x}" + (f"_by_{hue}" if hue else "")
        try:
            path = plot_runs(runs, x, y, hue, root / f"{file_name(figure_name)}.png")
        except ValueError as error:
            print(f"noderun report --plot: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
    return 0
