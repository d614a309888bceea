"""Measuring one case with one library: median times over repeats after a warm-up, function
evaluations counted by a wrapper (the same for every library), error against a tight float64
reference, and bytes saved for backward."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

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


def reference_tolerance(case: Case) -> float:
    """Four orders of magnitude below the case's own tolerance (at most 1e-8, at least 1e-12)."""
    return min(1e-8, max(1e-12, 1e-4 * min(case.rtol, case.atol)))


def reference_solution(case: Case) -> Tensor:
    """The case solved by noderun's dopri8 in float64 at ``reference_tolerance``."""
    func = copy.deepcopy(case.func).double()
    tol = reference_tolerance(case)
    with torch.no_grad():
        return odeint(
            func,
            case.y0.double(),
            case.t.double(),
            method="dopri8",
            rtol=tol,
            atol=tol,
            options={"max_num_steps": 1_000_000},
        ).float()


FORWARD_MODES = ("per_sample", "per_sample_compact", "compiled")  # forward-only variants of noderun's solve


def noderun_solver(mode: str, stats: SolveStats | None = None) -> Callable[..., Tensor]:
    """``mode``: a gradient mode, ``adjoint_seminorm``, ``per_sample`` (per-sample step control),
    ``per_sample_compact`` (finished samples dropped) or ``compiled`` (``options={"compile": True}``)."""
    grad = "adjoint" if mode.startswith("adjoint") else "backprop" if mode in FORWARD_MODES else mode
    adjoint_options = {"norm": "seminorm"} if mode == "adjoint_seminorm" else None
    options = {
        "max_num_steps": 1_000_000,
        "per_sample": mode.startswith("per_sample"),
        "compact": mode == "per_sample_compact",
        "compile": mode == "compiled",
    }

    def solve(func, y0, t, method, rtol, atol) -> Tensor:
        return odeint(
            func,
            y0,
            t,
            method=method,
            rtol=rtol,
            atol=atol,
            grad=grad,
            adjoint_options=adjoint_options,
            options=options,
            stats=stats,
        )

    return solve


def torchdiffeq_solver(mode: str) -> Callable[..., Tensor]:
    import torchdiffeq  # pyright: ignore[reportMissingImports]  # optional: the bench extra

    if mode == "backprop":
        return lambda func, y0, t, method, rtol, atol: cast(
            Tensor, torchdiffeq.odeint(func, y0, t, method=method, rtol=rtol, atol=atol)
        )
    adjoint_options = {"norm": "seminorm"} if mode == "adjoint_seminorm" else None
    return lambda func, y0, t, method, rtol, atol: cast(
        Tensor,
        torchdiffeq.odeint_adjoint(func, y0, t, method=method, rtol=rtol, atol=atol, adjoint_options=adjoint_options),
    )


SOLVERS = {"noderun": noderun_solver, "torchdiffeq": torchdiffeq_solver}
TORCHDIFFEQ_MODES = ("backprop", "adjoint", "adjoint_seminorm")  # it has no step checkpointing


def measures(library: str, mode: str) -> bool:
    return library == "noderun" or mode in TORCHDIFFEQ_MODES


def seconds_without_grad(run: Callable[[], Any]) -> float:
    """The wall time of one call of ``run`` with gradients off."""
    with torch.no_grad():
        started = time.perf_counter()
        run()
        return time.perf_counter() - started


class EvaluationTrial:
    """One evaluation of the function alone, at the start state, through the same counting wrapper the
    solves call (so that the wrapper's cost is not charged to the solvers). Each repeat times a burst
    of ``burst`` evaluations; it is interleaved with the forward solves, so that the overhead column
    divides times taken over the same minutes."""

    def __init__(self, case: Case, burst: int = 20):
        func, t0 = Counted(case.func), case.t[0]
        self.burst = lambda: [func(t0, case.y0) for _ in range(burst)]
        self.size = burst
        self.per_evaluation: list[float] = []
        with torch.no_grad():
            self.burst()  # warm-up

    def time_once(self) -> None:
        self.per_evaluation.append(seconds_without_grad(self.burst) / self.size)

    def row(self) -> dict[str, Any]:
        return {"eval_s": statistics.median(self.per_evaluation)}


class ForwardTrial:
    """A solve without gradients by one library: a first, untimed solve gives the error, the evaluations
    and (for noderun) the accepted steps — per-sample step control: the median sample's; ``time_once``
    adds a timed repeat. The compiled solve takes ``func`` unwrapped (a counter on it would make
    ``torch.compile`` recompile every step) and its evaluations from ``SolveStats``; its first solve's
    time, compilation included, is ``compile_s``."""

    def __init__(self, case: Case, library: str, reference: Tensor, mode: str = "backprop"):
        compiled = mode == "compiled"
        func, stats = (case.func if compiled else Counted(case.func)), SolveStats()
        solve = noderun_solver(mode, stats) if library == "noderun" else SOLVERS[library](mode)
        self.run = lambda: solve(func, case.y0, case.t, case.method, case.rtol, case.atol)
        with torch.no_grad():
            started = time.perf_counter()
            solution = self.run()
        self.facts = {
            "nfe": stats.nfe_forward if compiled else func.calls,
            "error": (solution - reference).abs().max().item(),
        }
        if compiled:
            self.facts["compile_s"] = time.perf_counter() - started
        if library == "noderun":
            self.facts["steps"] = statistics.median(stats.sample_steps) if stats.sample_steps else stats.steps_accepted
        self.times: list[float] = []

    def time_once(self) -> None:
        self.times.append(seconds_without_grad(self.run))

    def row(self) -> dict[str, Any]:
        return {"time_s": statistics.median(self.times), **self.facts}


class BackwardTrial:
    """Forward with gradients, then ``backward()`` of the sum of squares of every output: each repeat
    times the backward and counts its evaluations; the bytes the forward saved for it are kept. The
    first repeat, in the constructor, is a warm-up."""

    def __init__(self, case: Case, library: str, mode: str):
        self.func, self.saved = Counted(case.func), SavedTensorBytes()
        solve = SOLVERS[library](mode)
        y0 = case.y0.clone().requires_grad_(True)
        self.loss = lambda: solve(self.func, y0, case.t, case.method, case.rtol, case.atol).pow(2).sum()
        self.times: list[float] = []
        self.calls: list[int] = []
        self.time_once()
        self.times, self.calls = [], []

    def time_once(self) -> None:
        self.func.zero_grad(set_to_none=True)
        with self.saved.active():
            loss = self.loss()
        self.func.calls = 0
        started = time.perf_counter()
        loss.backward()
        self.times.append(time.perf_counter() - started)
        self.calls.append(self.func.calls)

    def row(self) -> dict[str, Any]:
        return {
            "time_s": statistics.median(self.times),
            "nfe": statistics.median(self.calls),
            "saved_mb": self.saved.bytes / MB,
        }


class RepeatedSolve:
    """A solve whose first call, made by the subclass, gave its ``facts`` (or left ``run`` as ``None`` when it
    did not finish): ``time_once`` adds a timed repeat; ``row`` has the facts and the median time."""

    run: Callable[[], Any] | None
    facts: dict[str, Any]
    times: list[float]

    def time_once(self) -> None:
        if self.run is not None:
            started = time.perf_counter()
            self.run()
            self.times.append(time.perf_counter() - started)

    def row(self) -> dict[str, Any]:
        return {**self.facts, "time_s": statistics.median(self.times) if self.times else None}


def interleaved(trials: list, repeats: int) -> list[dict[str, Any]]:
    """Time the trials in turn, ``repeats`` rounds, so that every library sees the same machine noise;
    one row per trial."""
    for _ in range(repeats):
        for trial in trials:
            trial.time_once()
    return [trial.row() for trial in trials]
