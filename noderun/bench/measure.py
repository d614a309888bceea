"""Measuring one case with one library: median times over repeats after a warm-up, function
evaluations counted by a wrapper (the same for every library), error against a tight float64
reference, and bytes saved for backward."""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..odeint import odeint
from ..solvers.stats import SolveStats
from ..train.meter import MB, SavedTensorBytes
from .cases import Case


class Counted(nn.Module):
    """``func`` with a count of its calls."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func, self.calls = func, 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        return self.func(t, y)


def median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def reference_tolerance(case: Case) -> float:
    """Four orders of magnitude below the case's own tolerance (at most 1e-8, at least 1e-12)."""
    return min(1e-8, max(1e-12, 1e-4 * min(case.rtol, case.atol)))


def reference_solution(case: Case) -> Tensor:
    """The case solved by noderun's dopri8 in float64 at ``reference_tolerance``."""
    func = copy.deepcopy(case.func).double()
    tol = reference_tolerance(case)
    with torch.no_grad():
        return odeint(func, case.y0.double(), case.t.double(), method="dopri8", rtol=tol, atol=tol,
                      options={"max_num_steps": 1_000_000}).float()


def noderun_solver(mode: str, stats: SolveStats | None = None) -> Callable[..., Tensor]:
    """``mode``: a gradient mode, ``adjoint_seminorm``, or ``per_sample`` (per-sample step control, backprop)."""
    grad = "adjoint" if mode.startswith("adjoint") else "backprop" if mode == "per_sample" else mode
    adjoint_options = {"norm": "seminorm"} if mode == "adjoint_seminorm" else None
    options = {"max_num_steps": 1_000_000, "per_sample": mode == "per_sample"}

    def solve(func, y0, t, method, rtol, atol):
        return odeint(func, y0, t, method=method, rtol=rtol, atol=atol, grad=grad, adjoint_options=adjoint_options,
                      options=options, stats=stats)

    return solve


def torchdiffeq_solver(mode: str) -> Callable[..., Tensor]:
    import torchdiffeq

    if mode == "backprop":
        return lambda func, y0, t, method, rtol, atol: torchdiffeq.odeint(func, y0, t, method=method, rtol=rtol, atol=atol)
    adjoint_options = {"norm": "seminorm"} if mode == "adjoint_seminorm" else None
    return lambda func, y0, t, method, rtol, atol: torchdiffeq.odeint_adjoint(
        func, y0, t, method=method, rtol=rtol, atol=atol, adjoint_options=adjoint_options)


SOLVERS = {"noderun": noderun_solver, "torchdiffeq": torchdiffeq_solver}
TORCHDIFFEQ_MODES = ("backprop", "adjoint", "adjoint_seminorm")  # it has no step checkpointing


def measures(library: str, mode: str) -> bool:
    return library == "noderun" or mode in TORCHDIFFEQ_MODES


def evaluation_seconds(case: Case, repeats: int) -> float:
    """One evaluation of the function alone, at the start state, through the same counting wrapper the
    solves call (so that the wrapper's cost is not charged to the solvers)."""
    t0, func = case.t[0], Counted(case.func)
    with torch.no_grad():
        return median_seconds(lambda: func(t0, case.y0), max(20, 10 * repeats), warmup=3)


def measure_forward(case: Case, library: str, repeats: int, reference: Tensor, mode: str = "backprop") -> dict[str, Any]:
    """Median time of a solve without gradients, its evaluations and maximum error; for noderun also the
    accepted steps (per-sample step control: the median sample's)."""
    func = Counted(case.func)
    stats = SolveStats()
    solve = noderun_solver(mode, stats) if library == "noderun" else SOLVERS[library](mode)

    def run():
        with torch.no_grad():
            return solve(func, case.y0, case.t, case.method, case.rtol, case.atol)

    solution = run()
    func.calls = 0
    steps = statistics.median(stats.sample_steps) if stats.sample_steps else stats.steps_accepted
    seconds = median_seconds(run, repeats, warmup=0)
    row = {"time_s": seconds, "nfe": func.calls / repeats, "error": (solution - reference).abs().max().item()}
    return {**row, "steps": steps} if library == "noderun" else row


def measure_backward(case: Case, library: str, mode: str, repeats: int) -> dict[str, Any]:
    """Forward with gradients then ``backward()`` of the sum of squares of every output: the backward's
    median time and evaluations, and the bytes the forward saved for it."""
    func = Counted(case.func)
    solve = SOLVERS[library](mode)
    y0 = case.y0.clone().requires_grad_(True)
    saved = SavedTensorBytes()
    backward_times, backward_calls = [], []
    for repeat in range(repeats + 1):  # the first is the warm-up
        func.zero_grad(set_to_none=True)
        with saved.active():
            loss = solve(func, y0, case.t, case.method, case.rtol, case.atol).pow(2).sum()
        func.calls = 0
        started = time.perf_counter()
        loss.backward()
        if repeat:
            backward_times.append(time.perf_counter() - started)
            backward_calls.append(func.calls)
    return {"time_s": statistics.median(backward_times), "nfe": statistics.median(backward_calls),
            "saved_mb": saved.bytes / MB}
