"""The work-precision CSV summarised: for each problem, noderun's methods against the same or the closest
method of torchdiffeq and SciPy, at each setting where both finished: the median over the settings of the
ratios noderun / theirs of wall time, error and evaluations. Then the fastest solve of each library to an
error of 1e-6. Writes results/summary.md.

    .venv/bin/python experiments/work_precision/summary.py experiments/work_precision/results
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

TARGET = 1e-6  # the error the fastest-solve table asks for
PAIRS = [  # noderun's method, the other library, its method
    ("bosh3", "torchdiffeq", "bosh3"),
    ("dopri5", "torchdiffeq", "dopri5"),
    ("dopri8", "torchdiffeq", "dopri8"),
    ("rk4", "torchdiffeq", "rk4"),
    ("dopri5", "scipy", "RK45"),
    ("dopri8", "scipy", "DOP853"),
    ("radau5", "scipy", "Radau"),
    ("kvaerno5", "scipy", "Radau"),
    ("kvaerno3", "scipy", "BDF"),
]


def number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def main(results: Path) -> None:
    with open(results / "work_precision.csv") as file:
        rows = list(csv.DictReader(file))
    index = {(r["problem"], r["library"], r["method"], r["tolerance"], r["steps_fixed"]): r for r in rows}
    lines = [
        "| problem | noderun | against | settings | time ratio | error ratio | NFE ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for ours, library, theirs in PAIRS:
            ratios = []
            for (p, lib, method, tolerance, steps), row in index.items():
                if (p, lib, method) != (problem, "noderun", ours):
                    continue
                other = index.get((problem, library, theirs, tolerance, steps))
                values = [number(r.get(k)) for r in (row, other or {}) for k in ("time_s", "error", "nfe")]
                if other is None or None in values or 0.0 in values:
                    continue
                t0, e0, n0, t1, e1, n1 = values
                ratios.append((t0 / t1, e0 / e1, n0 / n1))
            if ratios:
                medians = [statistics.median(r[i] for r in ratios) for i in range(3)]
                lines.append(
                    f"| {problem} | {ours} | {library} {theirs} | {len(ratios)} | "
                    + " | ".join(f"{m:.2f}" for m in medians)
                    + " |"
                )
    lines += [
        "",
        f"Fastest solve to an error of at most {TARGET:g}, per library (any method and setting):",
        "",
        "| problem | noderun | torchdiffeq | scipy |",
        "|---|---|---|---|",
    ]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        cells = []
        for library in ("noderun", "torchdiffeq", "scipy"):
            reached = [
                (number(r["time_s"]), r["method"], r["tolerance"] or f"{r['steps_fixed']} steps")
                for r in rows
                if (r["problem"], r["library"]) == (problem, library)
                and r["time_s"]
                and r["error"]
                and number(r["error"]) <= TARGET
            ]
            cells.append("{:.3g} s ({} {})".format(*min(reached)) if reached else "–")
        lines.append(f"| {problem} | " + " | ".join(cells) + " |")
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/work_precision/results"))
