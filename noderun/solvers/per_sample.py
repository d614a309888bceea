"""Per-sample step control (``options={"per_sample": True}``): every sample of the batch (dim 0 of
the state) has its own time, step size and error test, accepts or rejects its step on its own, and
stops being updated when it has reached the last output time.

The batch is still evaluated as one call of ``func``, with ``t`` a tensor of one time per sample,
shape ``(batch,)``; a finished sample rides along with a zero step. Steps end exactly at output times
(no dense output), so every sample's outputs are step ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import SolverError
from .control import MIN_PREVIOUS_RATIO
from .options import SolverOptions
from .step import StageList, error_estimate, rk_step, weighted_sum
from .tableau import ButcherTableau

BatchRHS = Callable[[Tensor, Tensor], Tensor]


@dataclass
class PerSampleSolution:
    """The states at the output times, and each sample's accepted and rejected steps."""

    ys: list[Tensor]
    accepted: Tensor
    rejected: Tensor


def row_rms(x: Tensor) -> Tensor:
    """The RMS norm of each sample: shape ``(batch,)``."""
    return x.reshape(len(x), -1).pow(2).mean(dim=1).sqrt()


def rows(x: Tensor, like: Tensor) -> Tensor:
    """``x`` of shape ``(batch,)`` viewed to broadcast against ``like`` (batch first)."""
    return x.view(-1, *([1] * (like.dim() - 1)))


class SampleStages(StageList):
    """Stages of a step whose size ``h`` is a tensor of one step size per sample, shape ``(batch,)``."""

    def combine(self, y: Tensor, h: Tensor, weights: Sequence[float]) -> Tensor:
        total = weighted_sum(weights, self.k)
        return y if total is None else y + rows(h, y).to(y.dtype) * total

    def weighted(self, weights: Sequence[float], scale: Tensor) -> Tensor:
        return weighted_sum(weights, self.k) * rows(scale, self.k[0]).to(self.k[0].dtype)


@torch.no_grad()
def initial_steps(rhs: BatchRHS, t0: Tensor, y0: Tensor, f0: Tensor, opts: SolverOptions, span: Tensor) -> Tensor:
    """Hairer's starting step for every sample (``control.initial_step``, row by row); one evaluation."""
    scale = y0.abs() * opts.rtol + opts.atol
    d0, d1 = row_rms(y0 / scale), row_rms(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    h0 = torch.minimum(h0, span.abs())
    signed = h0 * span.sign()
    f1 = rhs(t0 + signed, y0 + rows(signed, y0).to(y0.dtype) * f0)
    d2 = row_rms((f1 - f0) / scale) / h0
    biggest = torch.maximum(d1, d2)
    h1 = torch.where(biggest <= 1e-15, torch.clamp_min(h0 * 1e-3, 1e-6),
                     (0.01 / biggest.clamp_min(1e-300)) ** (1.0 / (opts.tableau.error_order + 1)))
    return torch.minimum(torch.minimum(100 * h0, h1), span.abs()) * span.sign()


class StepSizes:
    """The controller of ``control.PIController`` for a vector of step sizes."""

    def __init__(self, opts: SolverOptions, h: Tensor):
        self.opts, self.h = opts, h
        self.order = opts.tableau.error_order + 1
        self.previous_ratio = torch.ones_like(h)

    @torch.no_grad()
    def update(self, h_taken: Tensor, ratio: Tensor, accepted: Tensor, running: Tensor) -> None:
        """New step sizes from the steps just tried; samples no longer running keep theirs."""
        opts, k = self.opts, self.order
        ratio = ratio.clamp_min(1e-10)
        grow = opts.safety * ratio ** (0.75 * opts.beta - 1.0 / k) * self.previous_ratio ** opts.beta
        shrink = torch.where(torch.isfinite(ratio), opts.safety * ratio ** (-1.0 / k), torch.zeros_like(ratio))
        factor = torch.where(accepted, grow.clamp(opts.dfactor, opts.ifactor), shrink.clamp(opts.dfactor, 1.0))
        self.previous_ratio = torch.where(accepted, ratio.clamp_min(MIN_PREVIOUS_RATIO), self.previous_ratio)
        self.h = torch.where(running, h_taken * factor, self.h)


def integrate_per_sample(rhs: BatchRHS, y0: Tensor, times: list[float], opts: SolverOptions) -> PerSampleSolution:
    """Solve every sample from ``times[0]`` through every output time to ``times[-1]`` on its own clock."""
    tableau, batch = opts.tableau, len(y0)
    targets = torch.tensor(times, dtype=time_dtype(y0), device=y0.device)
    direction = 1.0 if times[-1] > times[0] else -1.0
    t = targets[0].expand(batch).clone()
    y, f = y0, rhs(t, y0)
    if not bool(torch.isfinite(f).all()):
        raise SolverError(f"the derivative func(t, y0) is not finite at the initial time t={times[0]!r}",
                          nonfinite=True)
    sizes = StepSizes(opts, initial_steps(rhs, t, y0, f, opts, targets[-1] - t))
    next_out = torch.ones(batch, dtype=torch.long, device=y0.device)
    ys = [y0] + [y0] * (len(times) - 1)
    accepted_steps = torch.zeros(batch, dtype=torch.long, device=y0.device)
    rejected_steps = torch.zeros_like(accepted_steps)
    min_step = 10 * torch.finfo(y0.dtype).eps * max(abs(times[0]), abs(times[-1]), abs(times[-1] - times[0]))
    for _ in range(opts.max_num_steps + 1):
        running = next_out < len(times)
        if not bool(running.any()):
            return PerSampleSolution(ys=ys, accepted=accepted_steps, rejected=rejected_steps)
        target = targets[next_out.clamp_max(len(times) - 1)]
        t_end = torch.where(running, torch.where((t + sizes.h - target) * direction >= 0, target, t + sizes.h), t)
        h = t_end - t
        y1, last_stage, ratio = sample_step(rhs, tableau, t, y, h, f, opts)
        accept = running & (ratio <= 1.0)
        reject = running & ~accept
        sizes.update(h, ratio, accept, running)
        _check_step_sizes(sizes.h, reject, t, min_step, ratio)
        y = torch.where(rows(accept, y), y1, y)
        t = torch.where(accept, t_end, t)
        f = torch.where(rows(accept, y), last_stage, f) if tableau.fsal else rhs(t, y)
        accepted_steps += accept
        rejected_steps += reject
        reached = accept & (t_end == target)
        for index in torch.unique(next_out[reached]).tolist():
            ys[index] = torch.where(rows(reached & (next_out == index), y), y, ys[index])
        next_out = next_out + reached
    raise SolverError(f"max_num_steps={opts.max_num_steps} steps taken with per-sample step control; "
                      f"{int((next_out < len(times)).sum())} sample(s) had not reached t={times[-1]!r}: "
                      "increase options['max_num_steps'] or loosen rtol/atol")


def sample_step(rhs: BatchRHS, tableau: ButcherTableau, t: Tensor, y0: Tensor, h: Tensor, f0: Tensor,
                opts: SolverOptions) -> tuple[Tensor, Tensor, Tensor]:
    """One step of ``tableau`` with a step size per sample: the new states, the last stage and each
    sample's error ratio (``inf`` where it or the new state is not finite)."""
    step = rk_step(rhs, tableau, t, y0, h, f0, SampleStages())
    with torch.no_grad():
        error = error_estimate(tableau, step)
        scale = torch.maximum(y0.abs(), step.y1.abs()) * opts.rtol + opts.atol
        ratio = row_rms(error / scale)
        ratio = torch.where(torch.isfinite(ratio) & torch.isfinite(row_rms(step.y1)), ratio,
                            torch.full_like(ratio, torch.inf))
    return step.y1, step.k[tableau.stages - 1], ratio.to(h.dtype)


def _check_step_sizes(h: Tensor, rejected: Tensor, t: Tensor, min_step: float, ratio: Tensor) -> None:
    too_small = rejected & (h.abs() < min_step)
    if bool(too_small.any()):
        sample = int(too_small.nonzero()[0])
        nonfinite = not bool(torch.isfinite(ratio[sample]))
        cause = "the state or its derivative became non-finite" if nonfinite else "step size underflow"
        raise SolverError(f"{cause} for sample {sample} at t={float(t[sample])!r} (step size {float(h[sample])!r}, "
                          f"minimum {min_step!r}); the dynamics may be stiff or blow up: try looser rtol/atol",
                          nonfinite=nonfinite)


def time_dtype(y0: Tensor) -> torch.dtype:
    """Float64 clocks where the device supports them (not on MPS)."""
    return torch.float32 if y0.device.type == "mps" else torch.float64
