"""Clocks: where the state stands in time, for the one integration loop.

``SharedClock``: one time (a Python float) for the whole state; steps may cross output times, which
dense output fills. ``SampleClocks`` (``options["per_sample"]``): one time per sample (dim 0 of the
state), a float64 tensor of shape ``(batch,)``; every sample accepts or rejects its own steps, which
end exactly at its next output time, and a finished sample stops moving (it rides along in the batch's
evaluations with a zero step, unless ``compact`` drops it). ``func`` then receives ``t`` of shape ``(batch,)``.

Both hand the loop the same things: the time ``t``, which elements are ``moving``, the end of a step of
a proposed size, and after each attempt the next step's ``y0`` and ``f0``, recording the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import torch
from torch import Tensor

from .control import FloatOps, Number, Ops, TensorOps
from .interpolate import dense_output, dense_stages
from .method import Adaptive, StepMethod
from .stats import NewtonWork
from .step import RHS, StageBuffer, StageList, Step, weighted_sum
from .tableau import ButcherTableau


@dataclass
class StepRecord:
    """An accepted step's start: enough to take it again (``grad="checkpoint"``, ``odeint_dense``). ``t_end``
    is the end the loop gave it (``t + h`` up to rounding)."""

    t: float
    h: float
    y0: Tensor
    t_end: float


@dataclass
class Solution:
    """The states at the output times and what the solve did.

    ``output_steps[i]`` is ``(s, theta)``: output ``i`` came from accepted step ``s`` at
    fraction ``theta`` (``None`` for exactly its end); output 0 is the initial state.
    ``steps`` is filled only when recording. Under per-sample control ``accepted`` and ``rejected``
    are the largest counts of any sample and ``sample_steps`` lists each sample's accepted steps.
    """

    ys: list[Tensor]
    output_steps: list[tuple[int, float | None]] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    sample_steps: list[int] | None = None
    work: NewtonWork | None = None  # an implicit method's Newton work


class Clock(Protocol):
    """What the integration loop and the step-size control use of a clock: ``SharedClock`` (``EventClock``) or
    ``SampleClocks``. Its times, step sizes and decisions are ``Number``s, which its ``ops`` operate on."""

    per_sample: bool
    ops: Ops
    time_dtype: torch.dtype
    t: Number
    moving: Number

    def unfinished(self) -> bool: ...
    def uniform(self, h: float) -> Number: ...
    def end_of_step(self, h: Number) -> Number: ...
    def where(self, step: Step, at: Number) -> str: ...
    def advance(self, rhs: RHS, step: Step, t_end: Number, accepted: Number) -> tuple[Tensor, Tensor | None]: ...
    def finish(self) -> Solution: ...


class SharedClock:
    """One float time for the whole state. Steps end on every time of ``stops`` inside the integration
    interval (``step_t`` and ``jump_t``); after a step that ends on a time of ``jumps`` the next step's
    first derivative is evaluated anew (on the far side of the discontinuity) instead of reused.

    ``resets(i, y)``, when given, replaces the state at every interior output time ``times[i]`` once that
    output is recorded (the adjoint's jumps): steps then end on every output time, the next step keeps the
    controller's step size and evaluates its first derivative anew."""

    per_sample = False
    ops: Ops = FloatOps
    time_dtype = torch.float64
    moving = True  # every element moves with every accepted step

    def __init__(
        self,
        y0: Tensor,
        times: list[float],
        tableau: ButcherTableau | StepMethod,
        record: bool = False,
        stops: tuple[float, ...] = (),
        jumps: tuple[float, ...] = (),
        resets: Callable[[int, Tensor], Tensor] | None = None,
    ):
        self.times, self.tableau, self.record, self.resets = times, tableau, record, resets
        self.t, self.next_out = times[0], 1
        self.solution = Solution(ys=[y0])
        t0, t_final = times[0], times[-1]
        if resets is not None:
            stops = (*stops, *times[1:-1])
        inside = sorted((x for x in set(stops) if (x - t0) * (t_final - x) > 0), reverse=t_final < t0)
        self.stops, self.jumps = inside + [t_final], frozenset(jumps)

    def unfinished(self) -> bool:
        return self.next_out < len(self.times)

    def uniform(self, h: float) -> float:
        """The step size ``h`` for every clock."""
        return h

    def end_of_step(self, h: float) -> float:
        """``t + h``, or the next stop (the final time, or a time of ``step_t``/``jump_t``) when that is closer."""
        t_end, stop = self.t + h, self.stops[0]
        return stop if (t_end - stop) * h >= 0 else t_end

    def where(self, step: Step, at: bool) -> str:
        """Where ``step`` stands, for a failure message."""
        return f"t={step.t!r} (last step size {step.h!r}"

    def advance(self, rhs: RHS, step: Step, t_end: float, accepted: bool) -> tuple[Tensor, Tensor | None]:
        """After an attempt: the next step's ``y0`` and ``f0`` (``None``: to be evaluated)."""
        sol = self.solution
        if not accepted:
            sol.rejected += 1
            return step.y0, step.k[0]  # the retry starts from the same point
        reached = self._outputs(rhs, step, t_end)
        if self.record:
            sol.steps.append(StepRecord(t=step.t, h=step.h, y0=step.y0, t_end=t_end))
        sol.accepted += 1
        self.t = t_end
        if t_end == self.stops[0] and len(self.stops) > 1:
            self.stops.pop(0)
            if self.resets is not None and reached:
                y = step.y1
                for i in reached:
                    y = self.resets(i, y)
                return y, None
            if t_end in self.jumps:
                return step.y1, None
        return step.y1, (step.k[self.tableau.stages - 1] if self.tableau.fsal else None)

    def _outputs(self, rhs: RHS, step: Step, t_end: float) -> list[int]:
        """The outputs inside the accepted ``step``: its end, or dense output inside it. Returns the indices
        of the interior outputs at exactly its end."""
        times, sol, extended, reached = self.times, self.solution, False, []
        while self.next_out < len(times) and (times[self.next_out] - t_end) * (t_end - step.t) <= 0:
            if times[self.next_out] == t_end:
                sol.ys.append(step.y1)
                sol.output_steps.append((sol.accepted, None))
                if self.next_out < len(times) - 1:
                    reached.append(self.next_out)
            else:
                tableau = cast(Adaptive, self.tableau)  # adaptive: a fixed grid's steps end on the output times
                if not extended:
                    dense_stages(rhs, tableau, step)
                    extended = True
                theta = (times[self.next_out] - step.t) / step.h
                sol.ys.append(dense_output(tableau, step, theta))
                sol.output_steps.append((sol.accepted, theta))
            self.next_out += 1
        return reached

    def finish(self) -> Solution:
        return self.solution


def rows(x: Tensor, like: Tensor) -> Tensor:
    """``x`` of shape ``(batch,)`` viewed to broadcast against ``like`` (batch first)."""
    return x.view(-1, *([1] * (like.dim() - 1)))


class SampleStages(StageList):
    """Stages of a step whose size ``h`` is a tensor of one step size per sample, shape ``(batch,)``."""

    def combine(self, y: Tensor, h: Tensor, weights: Sequence[float]) -> Tensor:
        total = weighted_sum(weights, self.k)
        return y if total is None else y + rows(h, y).to(y.dtype) * total

    def weighted(self, weights: Sequence[float], scale: Tensor) -> Tensor:
        total = weighted_sum(weights, self.k)
        assert total is not None  # an error estimate's weights are not all zero
        return total * rows(scale, self.k[0]).to(self.k[0].dtype)


class SampleStageBuffer(StageBuffer):
    """``StageBuffer`` for a step size per sample: a combination is one matrix–vector product over the
    stages, then one multiply-add by the step sizes, cast to the state's dtype once per step."""

    def __init__(self, tableau: ButcherTableau, like: Tensor):
        super().__init__(tableau, like)
        self.h: Tensor | None = None
        self.h_rows: Tensor  # h as rows of the state's dtype: made with h, on first use

    def combine(self, y: Tensor, h: Tensor, weights: Sequence[float]) -> Tensor:
        return torch.addcmul(y, self._rows(h), self._sum(weights))

    def weighted(self, weights: Sequence[float], scale: Tensor) -> Tensor:
        return self._sum(weights).mul_(self._rows(scale))

    def _sum(self, weights: Sequence[float]) -> Tensor:
        columns, weight_tensor = self._plan(weights)
        return torch.mv(columns, weight_tensor).view_as(self.like)

    def _rows(self, h: Tensor) -> Tensor:
        if h is not self.h:
            self.h, self.h_rows = h, rows(h, self.like).to(self.like.dtype)
        return self.h_rows


def sample_stage_store(tableau: ButcherTableau, y0: Tensor) -> StageList:
    """A buffer when no graph is being recorded, else a list; both with one step size per sample."""
    return SampleStages() if torch.is_grad_enabled() else SampleStageBuffer(tableau, y0)


class SampleClocks:
    """One float64 time per sample (float32 on MPS, which has no float64)."""

    per_sample = True
    ops: Ops = TensorOps

    def __init__(self, y0: Tensor, times: list[float], tableau: ButcherTableau | StepMethod):
        self.tableau, self.count = tableau, len(times)
        dtype = torch.float32 if y0.device.type == "mps" else torch.float64
        self.time_dtype = dtype
        self.targets = torch.tensor(times, dtype=dtype, device=y0.device)
        self.direction = 1.0 if times[-1] > times[0] else -1.0
        self.t = self.targets[0].expand(len(y0)).clone()
        self.next_out = torch.ones(len(y0), dtype=torch.long, device=y0.device)
        self.moving = torch.ones(len(y0), dtype=torch.bool, device=y0.device)
        self.accepted = torch.zeros(len(y0), dtype=torch.long, device=y0.device)
        self.rejected = torch.zeros_like(self.accepted)
        self.ys = [y0] * len(times)
        self.rows: Tensor | None = None  # once compacted: each remaining row's index in the whole batch
        self.counts: tuple[Tensor, Tensor]  # once compacted: every sample's steps at the last compaction

    def unfinished(self) -> bool:
        self.moving = self.next_out < self.count
        return bool(self.moving.any())

    def uniform(self, h: float) -> Tensor:
        return torch.full_like(self.t, h)

    def end_of_step(self, h: Tensor) -> Tensor:
        """Each moving sample's ``t + h``, or its next output time when that is closer; the others' ``t``."""
        target = self.next_target()
        t_end = torch.where((self.t + h - target) * self.direction >= 0, target, self.t + h)
        return torch.where(self.moving, t_end, self.t)

    def next_target(self) -> Tensor:
        """Each sample's next output time (the last one for a finished sample)."""
        return self.targets[self.next_out.clamp_max(self.count - 1)]

    def where(self, step: Step, at: Tensor) -> str:
        row, h = int(at.nonzero()[0]), cast(Tensor, step.h)  # a step size per sample
        sample = row if self.rows is None else int(self.rows[row])  # its index in the whole batch
        return f"t={float(self.t[row])!r} for sample {sample} (last step size {float(h[row])!r}"

    def advance(self, rhs: RHS, step: Step, t_end: Tensor, accepted: Tensor) -> tuple[Tensor, Tensor | None]:
        y = torch.where(rows(accepted, step.y1), step.y1, step.y0)
        if self.tableau.fsal:
            f = torch.where(rows(accepted, y), step.k[self.tableau.stages - 1], step.k[0])
        else:  # evaluated at the next step's start, unless no sample moved
            f = None if bool(accepted.any()) else step.k[0]
        self.accepted += accepted
        self.rejected += self.moving & ~accepted
        self.t = torch.where(accepted, t_end, self.t)
        reached = accepted & (t_end == self.next_target())
        for index in torch.unique(self.next_out[reached]).tolist():
            self.ys[index] = self._record(self.ys[index], reached & (self.next_out == index), y)
        self.next_out = self.next_out + reached
        return y, f

    def _record(self, output: Tensor, which: Tensor, y: Tensor) -> Tensor:
        """``output`` (of the whole batch) with the rows ``which`` of ``y`` written into their samples' places."""
        if self.rows is None:
            return torch.where(rows(which, y), y, output)
        return output.index_copy(0, self.rows[which], y[which])

    def compact(self) -> Tensor | None:
        """Once at most half of the rows move, drop the others: the positions of the rows kept, by which the
        loop selects its own per-row tensors (``None``: none dropped). Their outputs are recorded already."""
        moving = int(self.moving.sum())
        if 2 * moving > len(self.t):
            return None
        keep = self.moving.nonzero().squeeze(1)
        self.counts = self.whole_counts()
        self.rows = (torch.arange(len(self.t), device=self.t.device) if self.rows is None else self.rows)[keep]
        self.t, self.next_out, self.moving = self.t[keep], self.next_out[keep], self.moving[keep]
        self.accepted, self.rejected = self.accepted[keep], self.rejected[keep]
        return keep

    def whole_counts(self) -> tuple[Tensor, Tensor]:
        """Every sample's accepted and rejected steps, those of the rows in the batch now included."""
        if self.rows is None:
            return self.accepted, self.rejected
        accepted, rejected = self.counts
        return accepted.index_copy(0, self.rows, self.accepted), rejected.index_copy(0, self.rows, self.rejected)

    def finish(self) -> Solution:
        accepted, rejected = self.whole_counts()
        return Solution(
            ys=self.ys,
            accepted=int(accepted.max()),
            rejected=int(rejected.max()),
            sample_steps=accepted.tolist(),
        )
