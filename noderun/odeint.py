"""The public entry points: ``odeint`` and ``odeint_adjoint`` parse their keywords once into a ``SolverSettings``;
``solve`` runs a parsed setting (validating the state and times) in its gradient mode. A tuple state is
flattened here, once, into the one tensor the solver core sees, and its solution unflattened."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import torch
from torch import Tensor, nn

from .errors import SolverError
from .grad.adjoint import AdjointODE
from .grad.checkpoint import CheckpointODE
from .grad.problem import ODEProblem
from .solvers.callbacks import step_callbacks
from .solvers.control import all_finite
from .solvers.events import EventFunction, EventGrid
from .solvers.layout import Layout
from .solvers.method import SolveMethod
from .solvers.settings import GRAD_MODES, SolverSettings, parsed
from .solvers.stats import SolveStats

__all__ = ["GRAD_MODES", "odeint", "odeint_adjoint", "solve"]

EventFn = Callable[[Tensor, Any], Tensor]


# What a solve returns, by its state and whether it ends at an event.
@overload
def odeint(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor,
    t: Tensor,
    *,
    method: str = ...,
    rtol: float = ...,
    atol: float = ...,
    options: Mapping[str, Any] | None = ...,
    grad: str = ...,
    adjoint_params: Sequence[Tensor] | None = ...,
    adjoint_rtol: float | None = ...,
    adjoint_atol: float | None = ...,
    adjoint_options: Mapping[str, Any] | None = ...,
    adjoint_method: str | None = ...,
    stats: SolveStats | None = ...,
    event_fn: None = None,
) -> Tensor: ...
@overload
def odeint(
    func: Callable[[Tensor, Any], Any],
    y0: tuple[Tensor, ...],
    t: Tensor,
    *,
    method: str = ...,
    rtol: float = ...,
    atol: float = ...,
    options: Mapping[str, Any] | None = ...,
    grad: str = ...,
    adjoint_params: Sequence[Tensor] | None = ...,
    adjoint_rtol: float | None = ...,
    adjoint_atol: float | None = ...,
    adjoint_options: Mapping[str, Any] | None = ...,
    adjoint_method: str | None = ...,
    stats: SolveStats | None = ...,
    event_fn: None = None,
) -> tuple[Tensor, ...]: ...
@overload
def odeint(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    *,
    method: str = ...,
    rtol: float = ...,
    atol: float = ...,
    options: Mapping[str, Any] | None = ...,
    grad: str = ...,
    adjoint_params: Sequence[Tensor] | None = ...,
    adjoint_rtol: float | None = ...,
    adjoint_atol: float | None = ...,
    adjoint_options: Mapping[str, Any] | None = ...,
    adjoint_method: str | None = ...,
    stats: SolveStats | None = ...,
    event_fn: EventFn,
) -> tuple[Tensor, Tensor | tuple[Tensor, ...]]: ...


def odeint(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    options: Mapping[str, Any] | None = None,
    grad: str = "backprop",
    adjoint_params: Sequence[Tensor] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_options: Mapping[str, Any] | None = None,
    adjoint_method: str | None = None,
    stats: SolveStats | None = None,
    event_fn: EventFn | None = None,
) -> Tensor | tuple[Tensor, ...] | tuple[Tensor, Tensor | tuple[Tensor, ...]]:
    """Solve ``dy/dt = func(t, y)`` from ``y(t[0]) = y0``; return ``y`` at every ``t``, shape ``(len(t), *y0.shape)``.
    A single time ``t = [t0]`` returns ``y0[None]`` without evaluating ``func``.

    ``y0`` may be a tuple of tensors (of any shapes and floating dtypes, on one device): ``func`` then
    takes and returns such tuples, and the result is a tuple of solutions, ``(len(t), *y0[i].shape)``
    each in ``y0[i]``'s dtype. The error norm of a tuple is by default the largest RMS norm over its
    tensors; a callable ``options["norm"]`` receives the tuple.

    ``t`` is 1-D, non-empty and strictly increasing or strictly decreasing. ``grad`` chooses how gradients
    are computed: ``"backprop"`` (autograd through the solver), ``"adjoint"`` (Algorithm 1 of
    Chen et al. 2018, memory constant in the number of steps) or ``"checkpoint"`` (recompute
    each step in the backward pass: the backprop gradient with one stored state per step).
    ``adjoint_method`` (default: ``method``), ``adjoint_rtol``, ``adjoint_atol`` and ``adjoint_options`` set
    the adjoint's backward solve. ``adjoint_params`` are the tensors to differentiate for ``"adjoint"``/``"checkpoint"``
    (default: the parameters of ``func`` when it is an ``nn.Module``). Pass a ``SolveStats`` as
    ``stats`` to read the number of function evaluations and steps, forward and backward.

    ``event_fn(t, y)`` (a tensor; ``y`` a tuple for a tuple state) turns the solve into one until an event:
    ``t`` then holds two times, ``t[1]`` giving only the direction of time, and the solve runs from ``t[0]``
    until an element of ``event_fn``'s value changes sign, returning ``(event_t, solution)`` with
    ``solution`` ``[y0, y(event_t)]`` of shape ``(2, *y0.shape)``. The state at the event carries
    gradients in the chosen mode as for the fixed end time ``event_t``; ``event_t`` itself has none
    (``odeint_event`` adds it).
    """
    settings = parsed(
        method,
        rtol,
        atol,
        options,
        grad,
        adjoint_options,
        adjoint_rtol,
        adjoint_atol,
        adjoint_method,
        events=event_fn is not None,
    )
    if event_fn is not None:
        return _solve_until_event(func, y0, t, settings, event_fn, adjoint_params, stats)
    return solve(func, y0, t, settings, adjoint_params=adjoint_params, stats=stats)


def solve(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    settings: SolverSettings,
    *,
    adjoint_params: Sequence[Tensor] | None = None,
    stats: SolveStats | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """``odeint`` with its settings already parsed (``SolverSettings``, made once, e.g. by an ODE block)."""
    problem, flat_y0, time_tensor = _flat_problem(func, y0, t, settings, stats)
    ys = _run(problem, flat_y0, time_tensor, settings, func, adjoint_params)
    return ys if problem.layout is None else problem.layout.unflatten(ys)


def _flat_problem(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Any,
    settings: SolverSettings,
    stats: SolveStats | None,
) -> tuple[ODEProblem, Tensor, Tensor]:
    """The validated problem, the state as one tensor and the times as a tensor. A tuple state is flattened
    once (``Layout``) and solved as one tensor: ``(N,)``, or ``(B, N)`` batch first under per-sample step
    control, where each sample's error is the RMS norm over its whole row."""
    stats = stats if stats is not None else SolveStats()
    if not isinstance(y0, (tuple, list)):
        _check_state(y0, "y0")
        times, time_tensor = _check_times(t, y0.dtype)
        problem = ODEProblem(
            func=func, times=times, options=settings.forward, stats=stats, **_callbacks(func, settings, lambda y: y)
        )
        return problem, y0, time_tensor
    y0 = tuple(y0)
    _check_tuple(y0, settings.forward.per_sample)
    layout = Layout(y0, batch_first=settings.forward.per_sample)
    times, time_tensor = _check_times(t, layout.dtype)

    def flat_func(t: Tensor, y: Tensor) -> Tensor:
        state = layout.unflatten(y)
        return layout.flatten(layout.check(func(t, state), state, "func"))

    # the adjoint parameters are those of func (an nn.Module's), not of the flattening wrapper
    problem = ODEProblem(
        func=flat_func,
        times=times,
        options=settings.forward,
        stats=stats,
        layout=layout,
        **_callbacks(func, settings, layout.unflatten),
    )
    return problem, layout.flatten(y0), time_tensor


def _solve_until_event(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Any,
    settings: SolverSettings,
    event_fn: EventFn,
    adjoint_params: Sequence[Tensor] | None,
    stats: SolveStats | None,
) -> tuple[Tensor, Tensor | tuple[Tensor, ...]]:
    """``odeint`` with ``event_fn``: ``(event_t, [y0, y(event_t)])``, a tuple state flattened as in ``solve``."""
    _check_event_call(event_fn, t, settings)
    problem, flat_y0, time_tensor = _flat_problem(func, y0, t, settings, stats)
    layout = problem.layout
    flat_event = event_fn if layout is None else (lambda s, y: event_fn(s, layout.unflatten(y)))
    event = EventFunction(flat_event, problem.times[0], flat_y0)
    event_t, ys = _run_until_event(problem, flat_y0, time_tensor, settings, func, adjoint_params, event)
    return event_t, (ys if layout is None else layout.unflatten(ys))


def _run_until_event(
    problem: ODEProblem,
    y0: Tensor,
    t: Tensor,
    settings: SolverSettings,
    func: Any,
    adjoint_params: Sequence[Tensor] | None,
    event: EventFunction,
) -> tuple[Tensor, Tensor]:
    """Locate the event without a graph, then give the state there the gradient mode's gradients as for the
    fixed end time ``event_t``. Backprop (``t`` without gradient): the locating solve itself runs in the
    ambient grad mode and its interpolated state is returned. Otherwise, when a gradient is wanted, the
    ordinary solve from ``t[0]`` to ``event_t`` in the mode (a second solve)."""
    params = () if settings.grad == "backprop" else _adjoint_params(func, adjoint_params, settings.grad)
    in_graph = settings.grad == "backprop" and not t.requires_grad
    with contextlib.nullcontext() if in_graph else torch.no_grad():
        sol = problem.solve_until_event(y0, event)
    t0, t_event = problem.times[0], sol.event_t
    ys = torch.stack(sol.ys)
    wanted = torch.is_grad_enabled() and (y0.requires_grad or t.requires_grad or any(p.requires_grad for p in params))
    if not in_graph and wanted:
        if t_event == t0:
            ys = torch.stack([y0, y0])
        else:
            end = torch.tensor([t_event], dtype=t.dtype, device=t.device)
            to_event = _settings_to_event(settings, problem.times, t_event)
            fixed = dataclasses.replace(problem, times=[t0, t_event], options=to_event.forward)
            ys = _run(fixed, y0, torch.cat([t[:1], end]), to_event, func, adjoint_params)
    time_dtype = t.dtype if t.is_floating_point() else y0.dtype
    event_t = torch.tensor(t_event, dtype=time_dtype, device=t.device)
    if ys.requires_grad:  # in the graph with a zero gradient, so that a loss may include it (as torchdiffeq)
        event_t = event_t + (ys[-1] - ys[-1].detach()).sum().mul(0).to(time_dtype).to(t.device)
    return event_t, ys


def _settings_to_event(settings: SolverSettings, times: list[float], t_event: float) -> SolverSettings:
    """The settings of the solve from ``t0`` to the located event time: the event solve's, with a fixed-step
    method's steps where the locating solve took them (``t0 + k * size``, then the event time) and, unless
    ``adjoint_options`` say otherwise, the adjoint's backward steps on the same grid."""
    if settings.forward.tableau.adaptive:
        return dataclasses.replace(settings, events=False)
    inside, direction = EventGrid(times, settings.forward).ends_before(t_event), t_event - times[0]

    def grid(func: Any, y0: Tensor, t: Tensor) -> Tensor:
        start, end = float(t[0]), float(t[-1])
        points = inside if (end - start) * direction > 0 else inside[::-1]
        return torch.tensor([start, *points, end], dtype=torch.float64)

    options = {
        key: value for key, value in settings.options.items() if key not in ("step_size", "max_num_steps", "interp")
    }
    return dataclasses.replace(settings, options={**options, "grid_constructor": grid}, events=False)


def _check_event_call(event_fn: Any, t: Any, settings: SolverSettings) -> None:
    """What a solve until an event needs besides ``odeint``'s usual checks."""
    if not callable(event_fn):
        raise ValueError(f"event_fn must be a callable (t, y) -> tensor, got {type(event_fn).__name__}")
    times = t.detach() if isinstance(t, Tensor) else torch.as_tensor(t)
    if times.dim() != 1 or len(times) != 2:
        raise ValueError(
            "with event_fn, t must hold exactly two times: t[0] the start, t[1] only the direction "
            f"of time (the event may lie beyond it); got shape {tuple(times.shape)}"
        )
    if bool(times[0] == times[1]):
        raise ValueError(
            f"with event_fn, t must hold two distinct times (t[1] gives the direction of time), got {times.tolist()}"
        )
    if settings.forward.per_sample:
        raise ValueError(
            "event_fn and options['per_sample'] cannot be combined: an event stops the whole state "
            "at one time; drop per_sample"
        )
    if isinstance(settings.forward.tableau, SolveMethod):
        raise ValueError(
            f"method {settings.method!r} solves the whole problem itself and cannot locate an "
            "event_fn's event; use an adaptive or fixed-step method"
        )


def _callbacks(func: Any, settings: SolverSettings, state: Callable[[Tensor], Any]) -> dict[str, Any]:
    """``func``'s step callbacks for the forward solve and the adjoint's backward one (``solvers.callbacks``)."""
    backward = settings.backward
    return {
        "callbacks": step_callbacks(func, settings.forward.tableau, state),
        "adjoint_callbacks": None
        if backward is None
        else step_callbacks(func, backward.tableau, lambda y: y, adjoint=True),
    }


def _run(
    problem: ODEProblem,
    y0: Tensor,
    t: Tensor,
    settings: SolverSettings,
    func: Any,
    adjoint_params: Sequence[Tensor] | None,
) -> Tensor:
    """The validated problem from ``y0`` (one tensor) in the settings' gradient mode: ``(len(t), *y0.shape)``.
    ``func`` and ``adjoint_params`` (as the user gave them) say which tensors the adjoint/checkpoint differentiate."""
    if settings.forward.per_sample:
        _check_per_sample(y0, t, settings.grad)
    if settings.grad == "backprop":
        run = problem.solve
    else:
        run = _custom_solver(problem, settings, _adjoint_params(func, adjoint_params, settings.grad))
    if len(t) == 1:
        return _initial_only(y0, t)
    if t.requires_grad:
        return _solve_with_time_gradient(problem, y0, t, run)
    return run(y0)


def odeint_adjoint(
    func: Callable[[Tensor, Any], Any], y0: Tensor | tuple[Tensor, ...], t: Tensor, **kwargs: Any
) -> Tensor | tuple[Tensor, ...] | tuple[Tensor, Tensor | tuple[Tensor, ...]]:
    """``odeint(..., grad="adjoint")``: the drop-in for ``torchdiffeq.odeint_adjoint``."""
    if "grad" in kwargs:
        raise TypeError("odeint_adjoint always uses grad='adjoint'; call odeint(..., grad=...) to choose")
    return odeint(func, y0, t, grad="adjoint", **kwargs)


def _custom_solver(problem: ODEProblem, settings: SolverSettings, params: tuple[Tensor, ...]):
    def run(y0: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and (y0.requires_grad or any(p.requires_grad for p in params))):
            with torch.no_grad():
                return problem.solve(y0)
        if settings.grad == "adjoint":
            return AdjointODE.apply(problem, settings.backward, y0, *params)
        return CheckpointODE.apply(problem, y0, *params)

    return run


def _initial_only(y0: Tensor, t: Tensor) -> Tensor:
    """The solution at a single output time ``t[0]``: ``y0[None]`` (a copy), without evaluating ``func``, in
    every gradient mode. Its gradient is the identity in ``y0``, zero in ``t`` (attached when ``t`` requires grad)."""
    ys = y0[None].clone()
    if t.requires_grad:
        ys = ys + ((t - t.detach()) * 0).to(y0.dtype).view(-1, *([1] * y0.dim()))
    return ys


def _solve_with_time_gradient(problem: ODEProblem, y0: Tensor, t: Tensor, run: Callable[[Tensor], Tensor]) -> Tensor:
    """Attach ``dL/dt``: ``dL/dt_i = <dL/dy_i, f(t_i, y_i)>`` and ``dL/dt_0 = -<a(t_0), f(t_0, y_0)>``.

    Each term enters as ``value * (t - t.detach())``, zero in value, so the states are unchanged.
    Costs ``len(t)`` extra evaluations of ``func``, counted as forward evaluations.
    """
    rhs = problem.rhs(y0)
    shift = (t - t.detach()).to(y0.dtype)
    with torch.no_grad():
        f0 = rhs(problem.times[0], y0)
    ys = run(y0 - f0 * shift[0])
    with torch.no_grad():
        slopes = [f0] + [rhs(ti, yi) for ti, yi in zip(problem.times[1:], ys[1:])]
    problem.stats.add_forward(rhs.calls)
    return ys + torch.stack(slopes) * shift.view(-1, *([1] * y0.dim()))


def _check_state(y0: Any, name: str) -> None:
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        got = y0.dtype if isinstance(y0, Tensor) else type(y0).__name__
        raise ValueError(f"{name} must be a floating-point tensor (float16/32/64, bfloat16), got {got}")
    if y0.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(y0.shape)}); the state needs at least one element")
    if not all_finite(y0):
        raise SolverError(
            f"{name} contains NaN or infinite values: the model feeding the solve has diverged", nonfinite=True
        )


def _check_tuple(y0: tuple[Tensor, ...], per_sample: bool) -> None:
    if not y0:
        raise ValueError("y0 is an empty tuple; a tuple state needs at least one tensor")
    for i, x in enumerate(y0):
        _check_state(x, f"y0[{i}]")
    devices = {x.device for x in y0}
    if len(devices) > 1:
        raise ValueError(f"the tensors of y0 must be on one device, got {', '.join(map(str, devices))}")
    if per_sample:
        batches = [x.shape[0] if x.dim() else None for x in y0]
        if None in batches or len(set(batches)) > 1:
            raise ValueError(
                "options['per_sample'] needs every tensor of y0 batch first, with one batch size "
                f"(dim 0); got shapes {', '.join(str(tuple(x.shape)) for x in y0)}"
            )


def _check_times(t: Any, dtype: torch.dtype) -> tuple[list[float], Tensor]:
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=dtype)
    if t.dim() != 1 or len(t) < 1:
        raise ValueError(f"t must be a 1-D tensor of at least one time, got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"t must be real, got {t.dtype}")
    times = [float(x) for x in t.detach().cpu().tolist()]
    if not all(math.isfinite(x) for x in times):
        raise ValueError(f"t contains NaN or infinite values: {times}")
    steps = [b - a for a, b in zip(times, times[1:])]
    if not (all(s > 0 for s in steps) or all(s < 0 for s in steps)):
        raise ValueError(f"t must be strictly increasing or strictly decreasing, got {times}")
    return times, t


def _check_per_sample(y0: Tensor, t: Tensor, grad: str) -> None:
    if y0.dim() < 1:
        raise ValueError("options['per_sample'] needs a batch: y0 of shape (batch, ...), got a 0-dim y0")
    if grad == "checkpoint":
        raise ValueError("options['per_sample'] works with grad='backprop' or 'adjoint', not 'checkpoint'")
    if t.requires_grad:
        raise ValueError("options['per_sample'] does not give gradients with respect to t")


def _adjoint_params(func: Any, adjoint_params: Sequence[Tensor] | None, grad: str) -> tuple[Tensor, ...]:
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise ValueError(
                f"grad={grad!r} needs to know which tensors func depends on: make func an nn.Module "
                "or pass adjoint_params=(...) (an empty tuple when there are none)"
            )
        adjoint_params = list(func.parameters())
    params = tuple(adjoint_params)
    for p in params:
        if not isinstance(p, Tensor):
            raise ValueError(f"adjoint_params must be tensors, got {type(p).__name__}")
    return tuple(p for p in params if p.requires_grad)
