"""The integration loop — the only one — shared by every method and every gradient mode."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..errors import SolverError
from .control import ErrorRatio, PIController, all_finite, fixed_grid, initial_step, rms_norm
from .fused import FusedStepper
from .interpolate import dense_output, dense_stages
from .options import SolverOptions
from .step import RHS, Step, error_estimate, rk_step, stage_store


@dataclass
class StepRecord:
    """An accepted step's start: enough to recompute it (``grad="checkpoint"``)."""

    t: float
    h: float
    y0: Tensor


@dataclass
class Solution:
    """The states at the output times and what the solve did.

    ``output_steps[i]`` is ``(s, theta)``: output ``i`` came from accepted step ``s`` at
    fraction ``theta`` (``None`` for exactly its end); output 0 is the initial state.
    ``steps`` is filled only when recording.
    """

    ys: list[Tensor]
    output_steps: list[tuple[int, float | None]] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0


def integrate(rhs: RHS, y0: Tensor, times: list[float], opts: SolverOptions, norm=rms_norm,
              record: bool = False) -> Solution:
    """Solve from ``times[0]`` to ``times[-1]`` (either direction); return the states at ``times``.

    ``norm`` maps scaled errors to a scalar. Raises ``SolverError`` when the solve cannot finish.
    """
    tableau = opts.tableau
    f0 = rhs(times[0], y0)
    _check_derivative(f0, y0, times[0])
    sizer = AdaptiveSizer(rhs, y0, f0, times, opts, norm) if tableau.adaptive else FixedSizer(times, opts)
    sol = Solution(ys=[y0])
    t, y, next_out = times[0], y0, 1
    stepper = _stepper(rhs, y0, opts, sizer)
    while next_out < len(times):
        t_end = sizer.propose(t)
        step = stepper(t, y, t_end - t, f0)
        if not sizer.accept(step):
            sol.rejected += 1
            f0 = step.k[0]  # the retry starts from the same point
            continue
        extended = False
        while next_out < len(times) and (times[next_out] - t_end) * (t_end - t) <= 0:
            if times[next_out] == t_end:
                sol.ys.append(step.y1)
                sol.output_steps.append((sol.accepted, None))
            else:
                if not extended:
                    dense_stages(rhs, tableau, step)
                    extended = True
                theta = (times[next_out] - t) / step.h
                sol.ys.append(dense_output(tableau, step, theta))
                sol.output_steps.append((sol.accepted, theta))
            next_out += 1
        if record:
            sol.steps.append(StepRecord(t=t, h=step.h, y0=y))
        sol.accepted += 1
        t, y, f0 = t_end, step.y1, (step.k[tableau.stages - 1] if tableau.fsal else None)
    return sol


def _stepper(rhs: RHS, y0: Tensor, opts: SolverOptions, sizer: AdaptiveSizer | FixedSizer
             ) -> Callable[[float, Tensor, float, Tensor | None], Step]:
    """``(t, y, h, f0) -> Step``: eager ``rk_step`` into one reused stage store, or compiled (``opts.compile``)."""
    if opts.compile:
        return FusedStepper(rhs, opts.tableau, sizer.error_ratio)
    stages = stage_store(opts.tableau, y0)
    return lambda t, y, h, f0: rk_step(rhs, opts.tableau, t, y, h, f0, stages)


def _check_derivative(f0: Tensor, y0: Tensor, t0: float) -> None:
    if not isinstance(f0, Tensor) or f0.shape != y0.shape or f0.dtype != y0.dtype:
        got = f"{tuple(f0.shape)} {f0.dtype}" if isinstance(f0, Tensor) else type(f0).__name__
        raise ValueError(
            f"func(t, y) must return a tensor of y's shape and dtype {tuple(y0.shape)} {y0.dtype}; got {got}"
        )
    if not all_finite(f0):
        raise SolverError(f"the derivative func(t, y0) is not finite at the initial time t={t0!r}", nonfinite=True)


class FixedSizer:
    """Fixed-step methods: ``ceil(interval / step_size)`` equal steps between consecutive output times."""

    error_ratio = None  # no error control

    def __init__(self, times: list[float], opts: SolverOptions):
        self.grid = [point for t0, t1 in zip(times, times[1:]) for point in fixed_grid(t0, t1, opts.step_size)]
        self.position = 0

    def propose(self, t: float) -> float:
        return self.grid[self.position]

    def accept(self, step: Step) -> bool:
        if not all_finite(step.y1):
            raise SolverError(
                f"the state became non-finite between t={step.t!r} and t={step.t + step.h!r} "
                f"(step size {step.h!r}); try a smaller step_size or an adaptive method", nonfinite=True
            )
        self.position += 1
        return True


class AdaptiveSizer:
    """Embedded error control: proposes steps, accepts or rejects them, enforces the step budget."""

    def __init__(self, rhs: RHS, y0: Tensor, f0: Tensor, times: list[float], opts: SolverOptions, norm):
        self.opts, self.t_final = opts, times[-1]
        self.error_ratio = ErrorRatio(opts.rtol, opts.atol, norm, y0)
        span = times[-1] - times[0]
        self.min_step = 10 * torch.finfo(y0.dtype).eps * max(abs(times[0]), abs(times[-1]), abs(span))
        self.controller = PIController(opts.tableau.error_order, opts.safety, opts.ifactor, opts.dfactor, opts.beta)
        self.attempts = 0
        if opts.first_step is not None:
            self.h = math.copysign(min(opts.first_step, abs(span)), span)
        else:
            with torch.no_grad():
                self.h = initial_step(rhs, times[0], y0, f0, opts.tableau.error_order, self.error_ratio, span)

    def propose(self, t: float) -> float:
        t_end = t + self.h
        return self.t_final if (t_end - self.t_final) * self.h >= 0 else t_end

    def accept(self, step: Step) -> bool:
        self.attempts += 1
        if self.attempts > self.opts.max_num_steps:
            raise SolverError(
                f"max_num_steps={self.opts.max_num_steps} steps taken, reaching t={step.t!r} of "
                f"t_final={self.t_final!r} (last step size {step.h!r}); increase options['max_num_steps'], "
                "loosen rtol/atol, or regularise the dynamics"
            )
        ratio = self._ratio(step)
        accepted = ratio <= 1.0
        self.h = self.controller.next_step(step.h, ratio, accepted)
        if abs(self.h) >= self.min_step:
            return accepted
        if accepted:  # a step must move t
            self.h = math.copysign(self.min_step, self.h)
            return True
        nonfinite = not math.isfinite(ratio)
        cause = "the state or its derivative became non-finite" if nonfinite else "step size underflow"
        raise SolverError(
            f"{cause} at t={step.t!r} (last step size {step.h!r}, minimum {self.min_step!r}); the dynamics "
            "may be stiff or blow up: try looser rtol/atol, a fixed-step method, or regularising the model",
            nonfinite=nonfinite,
        )

    def _ratio(self, step: Step) -> float:
        """The error ratio of ``step``, ``inf`` when the ratio or the new state is not finite."""
        if step.error_size is not None:
            return ErrorRatio.read(step.error_size)
        with torch.no_grad():
            return self.error_ratio(error_estimate(self.opts.tableau, step), step.y0, step.y1)
