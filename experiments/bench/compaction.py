"""Per-sample control with and without dropping finished samples (``compact``), beside the shared solve, at
equal error: the shared solve at the case's tolerance, per-sample control at that tolerance and at looser
ones (a per-sample solve measures each sample by its own norm, so it is more accurate at the same tolerance).
Cases whose per-sample data lie in the state (``compact`` calls ``func`` on a subset of the rows):
``mixed_rows`` (the MLP field at 256 rates over two decades, 256 hidden units) and Van der Pol with each
``mu`` in the state (256 oscillators, mu from 1 to 25, dopri5 at 1e-5). Every solve is repeated
``--repeats`` times, all of them interleaved; the table gives the median time with the spread (min–max),
and the time relative to the shared solve's by medians and by minima (the least disturbed repeat of each).

    .venv/bin/python experiments/bench/compaction.py --out experiments/bench/results/compaction.md
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from noderun.bench.cases import Case, VanDerPolInState, build_cases
from noderun.bench.measure import ForwardTrial, reference_solution

LOOSER = (1.0, 2.0, 4.0, 8.0)  # per-sample tolerances, as multiples of the case's


def van_der_pol_in_state() -> Case:
    y0 = torch.cat([torch.tensor([2.0, 0.0]).repeat(256, 1), torch.linspace(1.0, 25.0, 256)[:, None]], dim=1)
    return Case("van_der_pol_in_state", VanDerPolInState(), y0, torch.tensor([0.0, 10.0]), "dopri5", 1e-5, 1e-5)


def trials(case: Case) -> dict[str, ForwardTrial]:
    reference = reference_solution(case)
    found = {"shared": ForwardTrial(case, "noderun", reference)}
    for factor in LOOSER:
        looser = dataclasses.replace(case, rtol=case.rtol * factor, atol=case.atol * factor)
        for mode in ("per_sample", "per_sample_compact"):
            found[f"{mode} at {factor:g}x tol"] = ForwardTrial(looser, "noderun", reference, mode)
    return found


def table(case: Case, found: dict[str, ForwardTrial]) -> list[str]:
    shared, shared_best = found["shared"].row()["time_s"], min(found["shared"].times)
    lines = [
        f"### {case.name} (dopri5, tolerance {case.rtol:g})",
        "",
        "| solve | time (ms), median (min–max) | / shared, medians | / shared, minima | error | NFE "
        "| steps (median sample) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, trial in found.items():
        row, times = trial.row(), trial.times
        lines.append(
            f"| {name} | {1e3 * row['time_s']:.1f} ({1e3 * min(times):.1f}–{1e3 * max(times):.1f}) | "
            f"{row['time_s'] / shared:.2f} | {min(times) / shared_best:.2f} | {row['error']:.2e} | {row['nfe']} | "
            f"{row['steps']:g} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [f"torch {torch.__version__}, one thread, {args.repeats} interleaved repeats per solve.", ""]
    for case in (*build_cases(["mixed_rows"], tiny=False), van_der_pol_in_state()):
        found = trials(case)
        for _ in range(args.repeats):
            for trial in found.values():
                trial.time_once()
        lines += table(case, found)
        print("\n".join(lines[-len(found) - 5 :]), flush=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
