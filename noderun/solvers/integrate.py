"""The integration loop — the only one — shared by every method, every gradient mode and both kinds of
clock (one shared time, or one per sample)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from torch import Tensor

from ..errors import SolverError
from .callbacks import StepCallbacks
from .clocks import Clock, SampleClocks, SampleStages, SharedClock, Solution, StepRecord, sample_stage_store
from .control import FixedGrid, Number, StepController, rms_norm
from .events import EventClock, EventFunction, EventGrid
from .fused import FusedStepper
from .interpolate import dense_stages
from .method import Adaptive, SolveMethod, StepMethod, Stepper
from .options import SolverOptions
from .rhs import CountedRHS, CountingRHS, ShiftedEnds, check_derivative
from .step import Step, rk_step, stage_store
from .tableau import ButcherTableau

__all__ = ["Solution", "StepRecord", "integrate", "retake"]

Resets = Callable[[int, Tensor], Tensor]  # (output index, state there) -> the state to go on from


def integrate(
    rhs: CountedRHS,
    y0: Tensor,
    times: list[float],
    opts: SolverOptions,
    norm=rms_norm,
    record: bool = False,
    callbacks: StepCallbacks | None = None,
    event: EventFunction | None = None,
    resets: Resets | None = None,
) -> Solution:
    """Solve from ``times[0]`` to ``times[-1]`` (either direction); return the states at ``times``.

    ``norm`` maps scaled errors to a scalar (per-sample control measures each sample by its RMS norm).
    ``record`` keeps each accepted step's start (shared clock). ``callbacks`` are called around each step
    attempt. With an ``event``, ``times`` is ``[t0, t1]`` and the solve runs from ``t0`` in the direction of
    ``t1`` until the event, returning an ``EventSolution`` (``solvers.events``). Raises ``SolverError`` when
    the solve cannot finish. ``resets(i, y)`` replaces the state at each interior output time ``times[i]``
    once it is recorded (shared clock; a multistep method, whose history the jump voids, or one that solves
    the whole problem at once, restarts there).
    """
    tableau = opts.tableau
    if resets is not None and tableau.multistep and len(times) > 2:
        return _solve_in_pieces(rhs, y0, times, opts, norm, callbacks, resets)
    if isinstance(tableau, SolveMethod):
        return tableau.solve(rhs, y0, times, opts)
    if resets is not None and (event is not None or opts.per_sample):
        raise ValueError("resets need a shared clock: no event, no per_sample")
    clock = _clock(y0, times, opts, tableau, record, event, resets)
    ends = _shifted_ends(rhs, opts)
    rhs = ends or rhs
    if tableau.adaptive:
        f0 = _derivative(rhs, clock.t, y0)
        sizer = StepController(rhs, clock, times, y0, f0, opts, norm)
    else:
        sizer = FixedGrid(times, opts, rhs.func, y0) if event is None else EventGrid(times, opts)
        if ends is not None:
            ends.step(clock.t, sizer.propose(clock))
        f0 = _derivative(rhs, clock.t, y0)
    stepper = _stepper(rhs, y0, opts, sizer)
    y = y0
    while clock.unfinished():
        if opts.compact and (keep := cast(SampleClocks, clock).compact()) is not None:
            y, f0 = y[keep], None if f0 is None else f0[keep]
            cast(StepController, sizer).select(keep)
            stepper = _stepper(rhs, y, opts, sizer)
        t_end = sizer.propose(clock)
        if ends is not None:
            ends.step(clock.t, t_end)
        if callbacks is not None:
            callbacks.before(clock.t, y, t_end - clock.t)
        step = stepper(clock.t, y, t_end - clock.t, f0)
        accepted = sizer.accept(step, clock)
        if callbacks is not None:
            callbacks.after(step.t, step.y0, step.h, accepted)
        y, f0 = clock.advance(rhs, step, t_end, accepted)
    solution = clock.finish()
    solution.work = getattr(stepper, "work", None)
    return solution


def _clock(
    y0: Tensor,
    times: list[float],
    opts: SolverOptions,
    tableau: ButcherTableau | StepMethod,
    record: bool,
    event: EventFunction | None,
    resets: Resets | None,
) -> Clock:
    """The loop's clock, which the loop sees as a ``Clock`` only: it is written once over all of them."""
    if event is not None:
        return EventClock(y0, times, opts, event)
    if opts.per_sample:
        return SampleClocks(y0, times, tableau)
    return SharedClock(y0, times, tableau, record, stops=opts.step_t + opts.jump_t, jumps=opts.jump_t, resets=resets)


def _solve_in_pieces(
    rhs: CountedRHS, y0: Tensor, times: list[float], opts: SolverOptions, norm, callbacks, resets: Resets
) -> Solution:
    """The solve restarted at each interior output time, from the state reset there."""
    y, total = y0, Solution(ys=[y0])
    for i, (start, end) in enumerate(zip(times, times[1:]), start=1):
        piece = integrate(rhs, y, [start, end], opts, norm, callbacks=callbacks)
        total.ys.append(piece.ys[-1])
        total.accepted, total.rejected = total.accepted + piece.accepted, total.rejected + piece.rejected
        y = resets(i, piece.ys[-1]) if i < len(times) - 1 else piece.ys[-1]
    return total


def retake(rhs: CountedRHS, opts: SolverOptions, record: StepRecord, dense: bool = False) -> Step:
    """An accepted step taken again from its record, as the loop took it: by the method's own step, with the
    evaluations at its ends shifted where ``perturb`` or ``jump_t`` shifted them, and with ``dense`` the extra
    stages of its continuous extension (without, an FSAL tableau's last stage, which ``y1`` does not need, is
    skipped)."""
    ends = _shifted_ends(rhs, opts)
    if ends is not None:
        ends.step(record.t, record.t_end)
        rhs = ends
    if isinstance(opts.tableau, StepMethod):
        step = opts.tableau.step(rhs, record.t, record.y0, record.h, opts)
        if step.failure is not None:  # an implicit step the forward solve took, which Newton cannot take again
            raise SolverError(
                f"the step from t={record.t!r} of size {record.h!r} could not be taken again to "
                f"differentiate it: {step.failure}; raise options['max_iters'] or use "
                "grad='backprop'"
            )
    else:
        tableau = cast(ButcherTableau, opts.tableau)  # a SolveMethod records no steps
        step = rk_step(rhs, tableau, record.t, record.y0, record.h, None, fsal_stage=dense)
    if dense:
        dense_stages(rhs, cast(Adaptive, opts.tableau), step)  # adaptive: a fixed grid's steps end on the output times
    return step


def _shifted_ends(rhs: CountedRHS, opts: SolverOptions) -> ShiftedEnds | None:
    """``rhs`` with the step ends shifted (``ShiftedEnds``) when ``perturb`` or ``jump_t`` asks for it."""
    return ShiftedEnds(rhs, opts.perturb, opts.jump_t) if opts.perturb or opts.jump_t else None


def _stepper(rhs: CountedRHS, y0: Tensor, opts: SolverOptions, sizer: StepController | FixedGrid) -> Stepper:
    """``(t, y, h, f0) -> Step``: eager ``rk_step`` into one reused stage store, with one step size per
    sample (``opts.per_sample``), or compiled (``opts.compile``)."""
    if isinstance(opts.tableau, StepMethod):
        return opts.tableau.stepper(rhs, y0, opts)
    tableau = cast(ButcherTableau, opts.tableau)  # integrate hands a SolveMethod the whole problem
    if opts.per_sample:
        stages = sample_stage_store(tableau, y0)
        if isinstance(stages, SampleStages):  # recording a graph: a new list every step
            return lambda t, y, h, f0: rk_step(rhs, tableau, t, y, h, f0, SampleStages())
        return lambda t, y, h, f0: rk_step(rhs, tableau, t, y, h, f0, stages)
    if opts.compile:  # refused with perturb and jump_t: rhs is the CountingRHS itself
        return FusedStepper(cast(CountingRHS, rhs), tableau, sizer.error_ratio)
    stages = stage_store(tableau, y0)
    return lambda t, y, h, f0: rk_step(rhs, tableau, t, y, h, f0, stages)


def _derivative(rhs: CountedRHS, t0: Number, y0: Tensor) -> Tensor:
    """``rhs(t0, y0)``, checked: a finite tensor of ``y0``'s shape and dtype."""
    f0 = rhs(t0, y0)
    check_derivative(f0, y0, t0)
    return f0
