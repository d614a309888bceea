"""``noderun report DIR --plot X Y [--hue KEY]``: two summary values of a sweep against each other, one point
per configuration (its runs differing only in ``seed``) at the mean of X and Y with ± one std error bars
over those seeds, points of one ``hue`` value joined and coloured alike. Axes are logarithmic where the
values are positive and span more than a factor of 30."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, cast

from .report import RunRecord, varying_keys


def number(value: Any) -> float | None:
    """A summary number, or a swept config value as the overrides spell it (``"1e-4"``); else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def points(
    runs: list[RunRecord], x: str, y: str, hue: str | None
) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per hue value, ``(x mean, x std, y mean, y std)`` of each configuration (its runs differ in ``seed``
    alone; an axis that is a setting, not a result, sets configurations apart) whose runs have both values."""
    settings = {key for run in runs for key in (*run.overrides, *run.config) if key not in run.summary}
    axes = [key for key in varying_keys(runs) if key != "seed" and (key not in (x, y) or key in settings)]
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        if number(run.get(x)) is not None and number(run.get(y)) is not None:
            groups.setdefault(tuple(str(run.get(key)) for key in axes), []).append(run)
    by_hue: dict[str, list[tuple[float, float, float, float]]] = {}
    for members in groups.values():
        # a group holds only runs with both values as numbers
        xs = cast(list[float], [number(run.get(x)) for run in members])
        ys = cast(list[float], [number(run.get(y)) for run in members])
        label = str(members[0].get(hue)) if hue else y
        by_hue.setdefault(label, []).append((statistics.fmean(xs), spread(xs), statistics.fmean(ys), spread(ys)))
    return {label: sorted(series) for label, series in by_hue.items()}


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def wide(values: list[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) > 30


def plot_runs(runs: list[RunRecord], x: str, y: str, hue: str | None, path: Path) -> Path:
    """The figure at ``path``; ``ValueError`` naming the key when no run has both values as numbers."""
    series = points(runs, x, y, hue)
    if not series:
        have = sorted({key for run in runs for key, value in run.summary.items() if isinstance(number(value), float)})
        raise ValueError(f"no run has numbers for both {x!r} and {y!r}; numeric summary keys: {', '.join(have)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for label, data in sorted(series.items()):
        x_mean, x_std, y_mean, y_std = zip(*data)
        axes.errorbar(x_mean, y_mean, xerr=x_std, yerr=y_std, fmt="o-", capsize=3, markersize=4, label=label)
    all_x = [point[0] for data in series.values() for point in data]
    all_y = [point[2] for data in series.values() for point in data]
    axes.set(
        xlabel=x,
        ylabel=y,
        xscale="log" if wide(all_x) else "linear",
        yscale="log" if wide(all_y) else "linear",
        title=f"{y} against {x}" + (f" by {hue}" if hue else "") + " (mean ± std over seeds)",
    )
    axes.grid(True, which="major", alpha=0.3)
    if hue:
        axes.legend(title=hue, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
