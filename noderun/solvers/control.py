"""Step-size control, written once: error norms, the error ratio, the initial step, the PI controller and
``StepController`` (which adds the minimum step, the step budget and the failure messages) for adaptive
methods; ``FixedGrid`` for fixed-step ones. The same code serves a shared clock (floats) and one clock
per sample (tensors of shape ``(batch,)``; ``solvers.clocks``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias, cast

import torch
from torch import Tensor

from ..errors import SolverError
from .method import Adaptive
from .options import SolverOptions
from .step import RHS, Step, error_estimate

if TYPE_CHECKING:
    from .clocks import Clock

Norm = Callable[[Tensor], Tensor]

# A clock's number: a float for a shared clock, a float64 tensor of shape (batch,) for per-sample clocks (and for a
# decision, a bool or a boolean tensor). ``Any``, not ``float | Tensor``: which of the two is fixed for a whole solve
# by the clock's ``ops``, and a union would have to be narrowed at every operation of the controller, written once
# over both; the two ``Ops`` namespaces are checked for it instead.
Number: TypeAlias = Any


def rms_norm(x: Tensor) -> Tensor:
    """Root mean square over all elements."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def channel_norm(sizes: tuple[int, ...]) -> Norm:
    """Maximum of the RMS norms of consecutive channels of a flat vector of ``sizes`` elements.

    Elements past ``sum(sizes)`` are ignored: that is how the adjoint's seminorm leaves the
    parameter-gradient channels out of the error control.
    """
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)

    def norm(x: Tensor) -> Tensor:
        parts = [rms_norm(x[lo:hi]) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
        return torch.stack(parts).max()

    return norm


def all_finite(x: Tensor) -> bool:
    """Whether every element of ``x`` is finite: one reduction (``amax`` propagates NaN) and one read."""
    return math.isfinite(float(x.detach().abs().amax()))


def row_norm(x: Tensor) -> Tensor:
    """The 2-norm of each sample (dim 0): shape ``(batch,)``."""
    return torch.linalg.vector_norm(x.reshape(len(x), -1), dim=1)


class ErrorRatio:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))`` — a step is accepted when it is at most 1 —
    or ``inf`` when it or ``y1`` is not finite: a float for a shared clock, read from the device once,
    or with ``per_sample`` one ratio per sample (dim 0), a tensor of shape ``(batch,)``.

    ``like`` gives the states' size, dtype and device. The tolerances are kept as tensors (an
    operation with a Python number costs several microseconds more on a small state), and for the
    RMS norm its ``1 / sqrt(numel)`` (per sample: of a sample's elements) goes into them, leaving a
    plain 2-norm. ``|y1|`` is kept for the next step, whose ``y0`` it usually is.
    """

    def __init__(self, rtol: float, atol: float, norm: Norm, like: Tensor, per_sample: bool = False):
        self.per_sample = per_sample
        size = like.numel() // len(like) if per_sample else like.numel()
        root = math.sqrt(size) if norm is rms_norm else 1.0
        # torch.tensor, not scalar_tensor: a tolerance beyond the dtype's range becomes inf, not an error
        self.rtol = torch.tensor(rtol * root, dtype=like.dtype, device=like.device)
        self.atol = torch.tensor(atol * root, dtype=like.dtype, device=like.device)
        self.norm = row_norm if per_sample else torch.linalg.vector_norm if norm is rms_norm else norm
        self.magnitude: tuple[Tensor | None, Tensor | None] = (None, None)  # (y, |y|) of the last state seen

    def abs(self, y: Tensor) -> Tensor:
        """``|y|``, computed at most once for the same state."""
        if self.magnitude[0] is not y:
            self.keep(y, y.abs())
        y_abs = self.magnitude[1]
        assert y_abs is not None  # kept with y just above, if not before
        return y_abs

    def keep(self, y: Tensor, y_abs: Tensor) -> None:
        """Remember ``|y|`` (a new state's, usually the next step's ``y0``)."""
        self.magnitude = (y, y_abs)

    def scale(self, y0: Tensor) -> Tensor:
        """``atol + rtol * |y0|`` (with the RMS norm's root folded in)."""
        return torch.addcmul(self.atol, self.abs(y0), self.rtol)

    def measure(self, x: Tensor) -> Number:
        """``norm(x)``: a float, or a float64 tensor of one value per sample."""
        size = self.norm(x)
        return size.to(torch.float64) if self.per_sample else float(size)

    def __call__(self, error: Tensor, y0: Tensor, y1: Tensor) -> Number:
        y1_abs = y1.abs()
        size = error_size(self.norm, error, self.abs(y0), y1_abs, y1, self.atol, self.rtol)
        self.keep(y1, y1_abs)
        return self.read(size)

    def read(self, size: Tensor) -> Number:
        """The ratio as a float (per sample: a float64 tensor), ``inf`` where it is not finite."""
        if self.per_sample:
            size = size.detach().to(torch.float64)
            return torch.where(torch.isfinite(size), size, math.inf)
        ratio = float(size.detach())
        return ratio if math.isfinite(ratio) else math.inf


def error_size(
    norm: Norm, error: Tensor, y0_abs: Tensor, y1_abs: Tensor, y1: Tensor, atol: Tensor, rtol: Tensor
) -> Tensor:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))`` as a tensor, NaN when ``y1`` is not finite."""
    scale = torch.addcmul(atol, torch.maximum(y0_abs, y1_abs), rtol)
    # |y1| - |y1| is 0, or NaN where y1 is not finite (a scale of inf would hide it)
    size = torch.as_tensor(norm(torch.addcdiv(y1_abs - y1_abs, error, scale)))
    if norm is not torch.linalg.vector_norm and norm is not row_norm:  # it may leave elements out (the seminorm)
        size = torch.add(size, y1.sum(), alpha=0)
    return size


# The controller is written once, over ``ops``: a shared clock's numbers are Python floats, per-sample
# clocks' are tensors of shape (batch,). These two namespaces are the only places that tell them apart.


class Ops(Protocol):
    """The operations on a clock's numbers that the controller uses: ``FloatOps`` or ``TensorOps``, the classes
    themselves (a class-object protocol of static methods), checked against it where a clock names its ``ops``.
    Bounds (``low``, ``high``) are Python floats."""

    @staticmethod
    def floor(x: Number, low: float, /) -> Number: ...
    @staticmethod
    def larger(a: Number, b: Number, /) -> Number: ...
    @staticmethod
    def smaller(a: Number, b: Number, /) -> Number: ...
    @staticmethod
    def clip(x: Number, low: float, high: float, /) -> Number: ...
    @staticmethod
    def where(condition: Number, a: Number, b: Number, /) -> Number: ...
    @staticmethod
    def any(flags: Number, /) -> bool: ...
    @staticmethod
    def signed(size: Number, h: Number, /) -> Number: ...
    @staticmethod
    def add_scaled(y: Tensor, x: Tensor, h: Number, /) -> Tensor: ...  # y + h * x


class FloatOps:
    """The numbers of a shared clock: Python floats and booleans, so a step costs no tensor operation."""

    floor: ClassVar = staticmethod(max)  # floor(x, low)
    larger: ClassVar = staticmethod(max)
    smaller: ClassVar = staticmethod(min)
    any: ClassVar = staticmethod(bool)

    @staticmethod
    def clip(x: float, low: float, high: float) -> float:
        return min(high, max(low, x))

    @staticmethod
    def where(condition: bool, a: float, b: float) -> float:
        return a if condition else b

    @staticmethod
    def signed(size: float, h: float) -> float:
        return math.copysign(size, h)

    @staticmethod
    def add_scaled(y: Tensor, x: Tensor, h: float) -> Tensor:
        """``y + h * x``."""
        return torch.add(y, x, alpha=h)


class TensorOps:
    """The numbers of per-sample clocks: tensors of shape ``(batch,)``."""

    # torch's functions themselves; the annotations pick the overloads used (bounds are Python floats)
    floor: ClassVar[staticmethod[[Tensor, float], Tensor]] = staticmethod(torch.clamp_min)
    larger: ClassVar[staticmethod[[Tensor, Tensor], Tensor]] = staticmethod(torch.maximum)
    smaller: ClassVar[staticmethod[[Tensor, Tensor], Tensor]] = staticmethod(torch.minimum)
    clip: ClassVar[staticmethod[[Tensor, float, float], Tensor]] = staticmethod(torch.clamp)
    where: ClassVar[staticmethod[[Tensor, Number, Number], Tensor]] = staticmethod(torch.where)

    @staticmethod
    def any(flags: Tensor) -> bool:
        return bool(flags.any())

    @staticmethod
    def signed(size: float | Tensor, h: Tensor) -> Tensor:
        return torch.copysign(size if isinstance(size, Tensor) else torch.full_like(h, size), h)

    @staticmethod
    def add_scaled(y: Tensor, x: Tensor, h: Tensor) -> Tensor:
        """``y + h * x`` with one ``h`` per sample (dim 0)."""
        return y + h.view(-1, *([1] * (y.dim() - 1))).to(y.dtype) * x


def initial_step(
    rhs: RHS,
    t0: Number,
    y0: Tensor,
    f0: Tensor,
    error_order: int,
    error_ratio: ErrorRatio,
    span: float,
    ops: Ops = FloatOps,
) -> Number:
    """Hairer's starting step (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4), signed like ``span``:
    a float, or with ``TensorOps`` (and a per-sample ``error_ratio``) one per sample, ``t0`` then one time
    per sample.

    Costs one evaluation of ``rhs``; ``span`` is the signed length of the whole integration; the norm
    and tolerances are those of ``error_ratio``.
    """
    scale = error_ratio.scale(y0)
    d0 = error_ratio.measure(y0 / scale)
    d1 = error_ratio.measure(f0 / scale)
    h0 = ops.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / ops.floor(d1, 1e-300))
    h0 = ops.clip(h0, 0.0, abs(span))
    direction = math.copysign(1.0, span)
    f1 = rhs(t0 + direction * h0, ops.add_scaled(y0, f0, direction * h0))
    d2 = error_ratio.measure(torch.sub(f1, f0).div_(scale)) / h0
    biggest = ops.larger(d1, d2)
    h1 = ops.where(
        biggest <= 1e-15, ops.floor(h0 * 1e-3, 1e-6), (0.01 / ops.floor(biggest, 1e-300)) ** (1.0 / (error_order + 1))
    )
    return direction * ops.clip(ops.smaller(100 * h0, h1), 0.0, abs(span))


MIN_PREVIOUS_RATIO = 1e-4  # as Hairer's FACOLD: a near-zero error must not shrink the next step


@dataclass
class PIController:
    """Step-size control as in Hairer's DOPRI5 code: integral (``beta = 0``, the default, as in SciPy's
    RK45 and torchdiffeq) or proportional–integral (``beta > 0``; Hairer's default is 0.04).

    ``h_new = h * safety * ratio**(-(1/k - 0.75 * beta)) * previous_ratio**beta`` with
    ``k = error_order + 1`` and ``previous_ratio`` the last accepted step's; the factor is clipped to
    ``[dfactor, ifactor]``. A rejected step shrinks by ``safety * ratio**(-1/k)`` (at least ``dfactor``).
    Step sizes, ratios and decisions are floats and booleans, or tensors with one per sample.
    """

    error_order: int
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0
    previous_ratio: Number = 1.0
    ops: Ops = FloatOps

    def next_step(self, h: Number, ratio: Number, accepted: Number) -> Number:
        k, ops = self.error_order + 1, self.ops
        ratio = ops.floor(ratio, 1e-10)
        grow = self.safety * ratio ** (0.75 * self.beta - 1.0 / k) * self.previous_ratio**self.beta
        shrink = self.safety * ratio ** (-1.0 / k)  # 0 for an infinite ratio: clipped to dfactor
        factor = ops.where(accepted, ops.clip(grow, self.dfactor, self.ifactor), ops.clip(shrink, self.dfactor, 1.0))
        self.previous_ratio = ops.where(accepted, ops.floor(ratio, MIN_PREVIOUS_RATIO), self.previous_ratio)
        return h * factor


def fixed_grid(t0: float, t1: float, step_size: float | None) -> list[float]:
    """Step end points from ``t0`` to ``t1``: ``ceil(|t1 - t0| / step_size)`` equal steps.

    The last point is exactly ``t1``; with no ``step_size`` there is one step.
    """
    span = t1 - t0
    n = 1 if step_size is None else max(1, math.ceil(abs(span) / step_size * (1 - 1e-12)))
    return [t0 + span * (i / n) for i in range(1, n)] + [t1]


def constructed_grid(grid_constructor: Callable, func: Callable, y0: Tensor, times: list[float]) -> list[float]:
    """The step end points of ``grid_constructor(func, y0, t)`` (``t`` the output times as a tensor of ``y0``'s
    dtype), which must run from ``t[0]`` to ``t[-1]`` in the direction of ``t``, merged with the output times."""
    t = torch.tensor(times, dtype=y0.dtype, device=y0.device)
    grid = grid_constructor(func, y0, t)
    points = [float(x) for x in torch.as_tensor(grid).detach().cpu().reshape(-1).tolist()]
    direction = 1.0 if times[-1] > times[0] else -1.0
    ends = len(points) >= 2 and points[0] == float(t[0]) and points[-1] == float(t[-1])
    if not ends or any((b - a) * direction <= 0 for a, b in zip(points, points[1:])):
        raise ValueError(
            f"options['grid_constructor'] must return a 1-D grid from t[0]={times[0]!r} to "
            f"t[-1]={times[-1]!r}, strictly monotone in the direction of t; got {points}"
        )
    # a grid point that is an output time rounded to y0's dtype is that output time
    close = 4 * torch.finfo(y0.dtype).eps
    points = [x for x in points[1:-1] if all(abs(x - out) > close * max(1.0, abs(out)) for out in times)]
    return sorted(set(points) | set(times[1:-1]), reverse=direction < 0) + [times[-1]]


class StepController:
    """Embedded error control, for a shared clock or one clock per sample: the first step (``first_step``
    or Hairer's), the error ratio, the step-size controller, the minimum step, the step budget
    (``max_num_steps`` attempts) and the messages of the failures they detect."""

    def __init__(
        self, rhs: RHS, clock: Clock, times: list[float], y0: Tensor, f0: Tensor, opts: SolverOptions, norm: Norm
    ):
        self.opts, self.t_final = opts, times[-1]
        self.method = cast(Adaptive, opts.tableau)  # the loop controls the steps of adaptive methods only
        self.error_ratio = ErrorRatio(opts.rtol, opts.atol, norm, y0, per_sample=clock.per_sample)
        span = times[-1] - times[0]
        # the smallest step that moves the clock's time (func may see times rounded to the state's dtype)
        self.min_step = 10 * torch.finfo(clock.time_dtype).eps * max(abs(times[0]), abs(times[-1]), abs(span))
        self.bounded = opts.min_step > 0 or opts.max_step < math.inf
        self.accept_below = opts.min_step * (1 + 1e-9)  # t_end - t of a step of min_step may round a little above
        self.controller = PIController(
            self.method.error_order, opts.safety, opts.ifactor, opts.dfactor, opts.beta, ops=clock.ops
        )
        self.attempts = 0
        # a solve reset at its output times (the adjoint's) has max_num_steps per interval, as solved apart
        self.intervals = len(times) - 1 if getattr(clock, "resets", None) is not None else 1
        self.h: Number
        if opts.first_step is not None:
            self.h = clock.uniform(math.copysign(min(opts.first_step, abs(span)), span))
        else:
            with torch.no_grad():
                self.h = initial_step(rhs, clock.t, y0, f0, self.method.error_order, self.error_ratio, span, clock.ops)
        if self.bounded:
            self.h = self._bounded(self.h, clock.ops)

    def select(self, keep: Tensor) -> None:
        """Per sample: keep only the step sizes and controller state of the rows ``keep`` (a compacted batch)."""
        self.h = self.h[keep]
        if isinstance(self.controller.previous_ratio, Tensor):
            self.controller.previous_ratio = self.controller.previous_ratio[keep]

    def propose(self, clock: Clock) -> Number:
        """The end of the next step to try (per sample: a tensor of ends)."""
        return clock.end_of_step(self.h)

    def accept(self, step: Step, clock: Clock) -> Number:
        """Whether ``step`` is accepted (per sample: a boolean tensor); sets the next step size."""
        self.attempts += 1
        if self.attempts > self.opts.max_num_steps * self.intervals:
            per = f" per interval between its {self.intervals + 1} output times" if self.intervals > 1 else ""
            raise SolverError(
                f"max_num_steps={self.opts.max_num_steps} steps taken{per}, reaching "
                f"{clock.where(step, clock.moving)}, t_final {self.t_final!r}); increase options['max_num_steps'], "
                "loosen rtol/atol, or regularise the dynamics"
            )
        ratio, ops = self._ratio(step), clock.ops
        acceptable = ratio <= 1.0
        if step.failure is None and self.bounded:  # a step of at most min_step is accepted whatever its error
            acceptable = acceptable | (abs(step.h) <= self.accept_below)
        elif step.failure is not None and abs(step.h) <= self.accept_below:  # a failed step is never accepted
            raise SolverError(
                f"{step.failure} at t={step.t!r} with the smallest step allowed, min_step="
                f"{self.opts.min_step!r}; lower min_step, raise options['max_iters'] or loosen rtol/atol"
            )
        accepted = clock.moving & acceptable
        h_next = self.controller.next_step(step.h, ratio, accepted)
        self.h = ops.where(clock.moving, self._bounded(h_next, ops) if self.bounded else h_next, self.h)
        small = abs(self.h) < self.min_step
        if ops.any(small):
            stalled = small & clock.moving & (ratio > 1.0)
            if ops.any(stalled):
                self._underflow(step, clock, ratio, stalled)
            self.h = ops.where(accepted & small, ops.signed(self.min_step, self.h), self.h)  # a step must move t
        return accepted

    def _bounded(self, h: Number, ops: Ops) -> Number:
        """``h`` with its size within ``[min_step, max_step]``."""
        return ops.signed(ops.clip(abs(h), self.opts.min_step, self.opts.max_step), h)

    def _underflow(self, step: Step, clock: Clock, ratio: Number, stalled: Number) -> None:
        blown_up = stalled & (ratio == math.inf)
        nonfinite = clock.ops.any(blown_up) and step.failure is None
        cause = "the state or its derivative became non-finite" if nonfinite else "step size underflow"
        remedy = (
            "the dynamics may be stiff or blow up: try looser rtol/atol, a fixed-step method, or regularising the model"
        )
        if step.failure is not None:
            cause, remedy = step.failure, "try a larger options['max_iters'], looser rtol/atol, or a smaller first_step"
        raise SolverError(
            f"{cause} at {clock.where(step, blown_up if nonfinite else stalled)}, minimum {self.min_step!r}); {remedy}",
            nonfinite=nonfinite,
        )

    def _ratio(self, step: Step) -> Number:
        """The error ratio of ``step``, ``inf`` where it or the new state is not finite."""
        if step.error_size is not None:
            return self.error_ratio.read(step.error_size)
        with torch.no_grad():
            return self.error_ratio(error_estimate(self.method, step), step.y0, step.y1)


class FixedGrid:
    """Fixed-step methods (shared clock only): ``ceil(interval / step_size)`` equal steps between consecutive
    output times, or the steps of ``grid_constructor(func, y0, t)`` with the output times added; a
    non-finite state stops the solve."""

    error_ratio = None  # no error control

    def __init__(self, times: list[float], opts: SolverOptions, func: Callable, y0: Tensor):
        if opts.grid_constructor is not None:
            self.grid = constructed_grid(opts.grid_constructor, func, y0, times)
        else:
            self.grid = [point for t0, t1 in zip(times, times[1:]) for point in fixed_grid(t0, t1, opts.step_size)]
        self.position = 0

    def propose(self, clock: Clock) -> float:
        return self.grid[self.position]

    def accept(self, step: Step, clock: Clock) -> bool:
        if not all_finite(step.y1):
            raise SolverError(
                f"the state became non-finite between t={step.t!r} and t={step.t + step.h!r} "
                f"(step size {step.h!r}); try a smaller step_size or an adaptive method",
                nonfinite=True,
            )
        self.position += 1
        return True
