"""Event location: a solve that runs from ``t0`` until ``event_fn(t, y)`` changes sign, inside the one
integration loop.

``EventFunction`` makes the user's ``event_fn`` one number that starts positive (the event is where it
first reaches zero). ``EventClock`` is the loop's clock for such an open-ended solve: after every accepted
step it evaluates the event at the step's end; on a sign change it finds the crossing inside the step on
the step's interpolant (``step_interpolant``) with a safeguarded Illinois method (``find_crossing``), and
the solve ends there. ``EventGrid`` gives fixed-step methods their open-ended grid and step budget.
Everything here locates the event without a graph; only the state at the event is computed in the
ambient grad mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from ..errors import SolverError
from .clocks import Clock, SharedClock, Solution
from .control import FixedGrid
from .interpolate import dense_output, dense_stages
from .method import Adaptive
from .options import SolverOptions
from .step import RHS, Step
from .tableau import ButcherTableau

Interpolant = Callable[[float], Tensor]  # theta in [0, 1] -> y(t + theta * h)

MAX_CROSSING_ITERATIONS = 200  # the bracket halves at least every second iteration: ~110 reach any precision


class EventFunction:
    """``event_fn`` as one signed number: ``min_i event_fn(t, y)_i * sign(event_fn(t0, y0)_i)``.

    Every element starts positive (or zero), so the event is the first time any element changes sign,
    and it is where this number first drops to zero or below. ``event_fn`` receives ``t`` as a 0-dim
    tensor in ``y``'s dtype and returns a non-empty floating-point tensor (one element for one event).
    ``starts_at_zero``: an element is zero at ``t0``, so the event is at ``t0`` itself.
    """

    def __init__(self, event_fn: Callable[[Tensor, Any], Tensor], t0: float, y0: Tensor):
        self.event_fn = event_fn
        with torch.no_grad():
            first = event_fn(time_tensor(t0, y0), y0)
        if not isinstance(first, Tensor) or not first.is_floating_point() or first.numel() == 0:
            got = f"{first.dtype} of shape {tuple(first.shape)}" if isinstance(first, Tensor) else type(first).__name__
            raise ValueError(
                f"event_fn(t, y) must return a non-empty floating-point tensor (one element per "
                f"event, usually a scalar), got {got}"
            )
        if not bool(torch.isfinite(first).all()):
            raise ValueError(f"event_fn(t0, y0) is not finite at the initial time t0={t0!r}: {first.tolist()}")
        self.signs = torch.sign(first).detach()
        self.starts_at_zero = bool((self.signs == 0).any())

    def __call__(self, t: Tensor, y: Any) -> Tensor:
        """The signed event value as a 0-dim tensor, in the ambient grad mode."""
        return (self.event_fn(t, y) * self.signs).min()

    def value(self, t: float, y: Tensor) -> float:
        """The signed event value at ``(t, y)`` as a float, without a graph; ``SolverError`` if not finite."""
        with torch.no_grad():
            value = float(self(time_tensor(t, y), y))
        if not math.isfinite(value):
            raise SolverError(f"event_fn(t, y) is not finite at t={t!r}", nonfinite=True)
        return value


def time_tensor(t: float, like: Tensor) -> Tensor:
    """``t`` as ``func`` and ``event_fn`` receive it: a 0-dim tensor of ``like``'s dtype and device."""
    return torch.scalar_tensor(t, dtype=like.dtype, device=like.device)


@dataclass
class EventSolution(Solution):
    """``ys`` is ``[y0, y(event_t)]``; ``event_t`` the event time (``t0`` when ``event_fn`` is zero there)."""

    event_t: float = 0.0


class EventClock(SharedClock):
    """One float time for the whole state (a ``SharedClock`` without output times), running on past
    ``times[1]`` (which gives only the direction of time) until the event."""

    def __init__(self, y0: Tensor, times: list[float], opts: SolverOptions, event: EventFunction):
        self.opts, self.event, self.t = opts, event, times[0]
        self.solution = EventSolution(ys=[y0], event_t=times[0])
        self.found = event.starts_at_zero
        if self.found:
            self.solution.ys.append(y0)
        else:
            self.before = event.value(times[0], y0)  # the event value at the current time: positive

    def unfinished(self) -> bool:
        return not self.found

    def end_of_step(self, h: float) -> float:
        """``t + h``: the solve has no final time."""
        return self.t + h

    def advance(self, rhs: RHS, step: Step, t_end: float, accepted: bool) -> tuple[Tensor, Tensor | None]:
        """After an attempt: the next step's ``y0`` and ``f0``; on a sign change, the event ends the solve."""
        sol = self.solution
        if not accepted:
            sol.rejected += 1
            return step.y0, step.k[0]
        sol.accepted += 1
        after = self.event.value(t_end, step.y1)
        if after <= 0:
            self._locate(rhs, step, t_end, after)
        self.t, self.before = t_end, after
        tableau = self.opts.tableau
        return step.y1, (step.k[tableau.stages - 1] if tableau.fsal else None)

    def _locate(self, rhs: RHS, step: Step, t_end: float, after: float) -> None:
        """The event inside ``step``: its time and the interpolated state there."""
        interpolant = step_interpolant(rhs, self.opts, step, t_end)
        dtype_eps = torch.finfo(step.y0.dtype).eps
        resolution = max(4 * dtype_eps * max(abs(step.t), abs(t_end)) / abs(step.h), 4 * 2.0**-52)
        theta = find_crossing(
            lambda s: self.event.value(step.t + s * step.h, interpolant(s)), self.before, after, resolution
        )
        if theta == 1.0:
            event_t, y = t_end, step.y1
        else:
            event_t, y = step.t + theta * step.h, interpolant(theta)
        self.solution.ys.append(y)
        self.solution.event_t = event_t
        self.found = True

    def finish(self) -> EventSolution:
        return self.solution


def find_crossing(phi: Callable[[float], float], before: float, after: float, resolution: float) -> float:
    """Where ``phi`` crosses zero in ``[0, 1]``, given ``phi(0) = before > 0 >= phi(1) = after``.

    Illinois (regula falsi that halves the retained end's value when the same end is kept twice), with a
    bisection whenever an iteration failed to halve the bracket, until the bracket is at most
    ``resolution`` wide. Returns an exact zero when one is met, else the bracket's left end: the last point
    found where the sign has not yet changed.
    """
    a, fa, b, fb = 0.0, before, 1.0, after
    if fb == 0:
        return 1.0
    kept, bisect = 0, False
    for _ in range(MAX_CROSSING_ITERATIONS):
        width = b - a
        if width <= resolution:
            break
        c = b - fb * (b - a) / (fb - fa)
        if bisect or not a < c < b:
            c = 0.5 * (a + b)
        fc = phi(c)
        if fc == 0:
            return c
        if fc < 0:
            b, fb = c, fc
            fa = fa / 2 if kept == -1 else fa
            kept = -1
        else:
            a, fa = c, fc
            fb = fb / 2 if kept == 1 else fb
            kept = 1
        bisect = b - a > 0.5 * width
    return a


def step_interpolant(rhs: RHS, opts: SolverOptions, step: Step, t_end: float) -> Interpolant:
    """``theta -> y(step.t + theta * step.h)`` inside an accepted step, in the ambient grad mode.

    Adaptive tableaus: their dense output (its extra stages evaluated here). Fixed-step methods, whatever
    their stepper: from ``step.y0``, ``step.y1`` and, with ``options["interp"] = "cubic"``, the derivatives
    at both ends (cubic Hermite); linear otherwise. A tableau's first stage is the derivative at the start;
    any other method's is evaluated.
    """
    tableau = opts.tableau
    if tableau.adaptive:
        adaptive = cast(Adaptive, tableau)
        dense_stages(rhs, adaptive, step)
        return lambda theta: dense_output(adaptive, step, theta)
    y0, y1, h = step.y0, step.y1, step.h
    if opts.interp == "linear":
        return lambda theta: torch.lerp(y0, y1, theta)
    f0 = step.k[0] if isinstance(tableau, ButcherTableau) else rhs(step.t, y0)
    f1 = rhs(t_end, y1)
    return lambda theta: cubic_hermite(y0, y1, f0 * h, f1 * h, theta)


def cubic_hermite(y0: Tensor, y1: Tensor, d0: Tensor, d1: Tensor, theta: float) -> Tensor:
    """The cubic through ``y0``, ``y1`` with slopes ``d0``, ``d1`` (per unit of ``theta``) at its ends."""
    t2, t3 = theta * theta, theta * theta * theta
    return y0 * (2 * t3 - 3 * t2 + 1) + d0 * (t3 - 2 * t2 + theta) + y1 * (3 * t2 - 2 * t3) + d1 * (t3 - t2)


class EventGrid(FixedGrid):
    """Fixed-step methods in an event solve: steps of ``step_size`` (default ``|t[1] - t[0]|``) from ``t[0]``
    in the direction of ``t[1]``, each end ``t0 + n * step_size``, at most ``max_num_steps`` of them."""

    def __init__(self, times: list[float], opts: SolverOptions):
        span = times[1] - times[0]
        self.t0, self.position, self.budget = times[0], 0, opts.max_num_steps
        self.size = math.copysign(abs(span) if opts.step_size is None else opts.step_size, span)

    def propose(self, clock: Clock) -> float:
        if self.position >= self.budget:
            raise SolverError(
                f"max_num_steps={self.budget} steps of size {self.size!r} taken, reaching "
                f"t={clock.t!r}; increase options['max_num_steps'] or options['step_size']"
            )
        return self.t0 + (self.position + 1) * self.size

    def ends_before(self, t: float) -> list[float]:
        """The step ends this grid puts strictly between ``t[0]`` and ``t`` (the steps that located an event at
        ``t``)."""
        ends, k = [], 1
        while (t - (self.t0 + k * self.size)) * self.size > 0:
            ends.append(self.t0 + k * self.size)
            k += 1
        return ends
