"""Where the time of a bench case's forward solve goes (no gradient, one thread): loop iterations,
evaluations, time per iteration, and torch.profiler's operators by self CPU time, for the shared solve and,
where the case has it, per-sample step control beside it. The solver's own operators are those of the solve
less those of as many evaluations of the function alone, given per loop iteration.

    .venv/bin/python experiments/bench/profile_solve.py --case van_der_pol   # -> experiments/bench/profiles/
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from noderun import SolveStats, odeint
from noderun.bench.cases import build_cases
from noderun.bench.measure import Counted

MODES = {"shared": {}, "per_sample": {"per_sample": True}}


def solve(case, options: dict, stats: SolveStats | None = None):
    with torch.no_grad():
        return odeint(
            case.func,
            case.y0,
            case.t,
            method=case.method,
            rtol=case.rtol,
            atol=case.atol,
            options={"max_num_steps": 1_000_000, **options},
            stats=stats,
        )


def describe(case, name: str, options: dict, repeats: int) -> list[str]:
    stats, counted = SolveStats(), Counted(case.func)
    with torch.no_grad():
        odeint(
            counted,
            case.y0,
            case.t,
            method=case.method,
            rtol=case.rtol,
            atol=case.atol,
            options={"max_num_steps": 1_000_000, **options},
            stats=stats,
        )
    iterations = stats.steps_accepted + stats.steps_rejected  # per sample: the largest count of any sample
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        solve(case, options)
        times.append(time.perf_counter() - started)
    evaluation = min(_time_evaluation(case) for _ in range(3))
    median = statistics.median(times)
    steps = statistics.median(stats.sample_steps) if stats.sample_steps else stats.steps_accepted
    lines = [
        f"## {name}: median {median * 1e3:.1f} ms over {repeats} solves; {counted.calls} evaluations "
        f"({counted.calls * evaluation * 1e3:.1f} ms of evaluation alone at {evaluation * 1e6:.1f} us each); "
        f"loop iterations {iterations} (steps of the median sample {steps}); "
        f"{median / max(iterations, 1) * 1e6:.0f} us per iteration",
        "",
    ]
    solve_ops = operators(lambda: solve(case, options))
    evaluation_ops = operators(lambda: evaluate(case, counted.calls))
    lines += [
        f"the solver's own operators, per loop iteration (the solve's less {counted.calls} evaluations alone):",
        "",
        "| operator | calls | us |",
        "|---|---|---|",
    ]
    own = {
        name: (calls - evaluation_ops.get(name, (0, 0.0))[0], us - evaluation_ops.get(name, (0, 0.0))[1])
        for name, (calls, us) in solve_ops.items()
    }
    ranked = sorted(own.items(), key=lambda item: -item[1][1])
    for name, (calls, us) in ranked[:15]:
        lines.append(f"| {name} | {calls / iterations:.1f} | {us / iterations:.1f} |")
    total_calls, total_us = sum(c for c, _ in own.values()), sum(u for _, u in own.values())
    lines += [f"| all | {total_calls / iterations:.1f} | {total_us / iterations:.1f} |", ""]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        solve(case, options)
    lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    return lines


def operators(run) -> dict[str, tuple[int, float]]:
    """Each torch operator's calls and self CPU time (us) over ``run()``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key: (event.count, event.self_cpu_time_total) for event in prof.key_averages()}


def evaluate(case, calls: int) -> None:
    with torch.no_grad():
        for _ in range(calls):
            case.func(case.t[0], case.y0)


def _time_evaluation(case, burst: int = 50) -> float:
    with torch.no_grad():
        started = time.perf_counter()
        for _ in range(burst):
            case.func(case.t[0], case.y0)
    return (time.perf_counter() - started) / burst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="van_der_pol", help="a bench case (noderun bench's --cases)")
    parser.add_argument("--out", type=Path, default=Path("experiments/bench/profiles"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = build_cases([args.case], tiny=False)[0]
    modes = {name: options for name, options in MODES.items() if name == "shared" or name in case.forward_modes}
    for options in modes.values():
        solve(case, options)  # warm-up
    lines = []
    for name, options in modes.items():
        lines += describe(case, name, options, args.repeats) + [""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.case}.txt").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
