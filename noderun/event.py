"""``odeint_event``: a solve until an event whose event time carries gradients, by the implicit function
theorem.

At the event, ``g(t*, y(t*)) = 0`` for the signed event value ``g`` (``solvers.events.EventFunction``),
so ``dt* = -(∂g/∂y · dy + ∂g/∂φ · dφ) / (∂g/∂t + <∂g/∂y, f(t*, y*)>)``, where ``dy`` is the change of the
state at the fixed time ``t*`` and ``φ`` are ``event_fn``'s own parameters; and the state at the event,
``y(t*(θ), θ)``, changes by ``dy + f(t*, y*) dt*``. Both enter the graph as terms of value zero
(``x - x.detach()``), so the values are those of the solve and autograd carries the gradients to ``y0``,
``func``'s parameters (through the solve's own gradient mode), ``t0`` and ``event_fn``'s parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor

from .odeint import EventFn, odeint
from .solvers.events import EventFunction
from .solvers.layout import Layout


def odeint_event(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t0: Any,
    *,
    event_fn: EventFn,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | tuple[Tensor, ...]]:
    """Solve from ``t0`` (forwards, or backwards with ``reverse_time``) until ``event_fn(t, y)`` changes sign;
    return ``(event_t, solution)`` as ``odeint(..., event_fn=...)`` does, with the gradient of ``event_t``
    (and the state's through it) with respect to ``y0``, the parameters, ``t0`` and ``event_fn``'s tensors.

    ``odeint_interface`` is the solve to call (``odeint`` or ``odeint_adjoint``); ``kwargs`` go to it.
    The gradient needs ``event_fn``'s total time derivative at the event to be non-zero (a crossing, not
    a touch): otherwise the event time is returned without a gradient, with a warning.
    """
    first = y0[0] if isinstance(y0, (tuple, list)) and y0 else y0
    dtype = first.dtype if isinstance(first, Tensor) and first.is_floating_point() else None
    start = (t0 if isinstance(t0, Tensor) else torch.as_tensor(t0, dtype=dtype)).reshape(-1)
    if start.numel() != 1:
        raise ValueError(f"t0 must be one time (a number or a one-element tensor), got shape {tuple(start.shape)}")
    t = torch.cat([start, start.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    if not torch.is_grad_enabled():
        return event_t, solution
    if isinstance(solution, Tensor):  # then y0 is one tensor too
        y0 = cast(Tensor, y0)
        event_t, end = with_event_gradient(func, event_fn, float(start.detach()), y0, event_t, solution[-1])
        return event_t, torch.cat([solution[:-1], end[None]])
    layout = Layout(tuple(y0))

    def flat_func(s: Tensor, y: Tensor) -> Tensor:
        return layout.flatten(func(s, layout.unflatten(y)))

    def flat_event(s: Tensor, y: Tensor) -> Tensor:
        return event_fn(s, layout.unflatten(y))

    event_t, end = with_event_gradient(
        flat_func,
        flat_event,
        float(start.detach()),
        layout.flatten(tuple(y0)),
        event_t,
        layout.flatten([s[-1] for s in solution]),
    )
    return event_t, tuple(torch.cat([s[:-1], e[None]]) for s, e in zip(solution, layout.unflatten(end)))


def with_event_gradient(
    func: Callable[[Tensor, Tensor], Tensor], event_fn: EventFn, t0: float, y0: Tensor, event_t: Tensor, y_event: Tensor
) -> tuple[Tensor, Tensor]:
    """``(event_t, y_event)`` of the same values with the implicit function theorem's gradients added: ``y_event``
    is the state at the fixed time ``event_t`` (its graph that of a fixed-time solve), ``y0`` the state at
    ``t0`` (where the event value's signs are taken)."""
    event = EventFunction(event_fn, t0, y0)
    time = event_t.detach().to(y_event.device, y_event.dtype)
    with torch.no_grad():
        f_event = func(time, y_event.detach())
    with torch.enable_grad():
        t_leaf = time.clone().requires_grad_(True)
        y_leaf = y_event.detach().clone().requires_grad_(True)
        value = event(t_leaf, y_leaf)
        leaves = (t_leaf, y_leaf)
        partials = torch.autograd.grad(value, leaves, allow_unused=True) if value.requires_grad else (None, None)
    dg_dt, dg_dy = (torch.zeros_like(x) if g is None else g for g, x in zip(partials, leaves))
    slope = float(dg_dt + (dg_dy * f_event).sum())
    if slope == 0:
        warnings.warn(
            f"event_fn's total time derivative is zero at the event t={float(time)!r} (it touches zero "
            "without crossing): the event time is returned without a gradient",
            RuntimeWarning,
            stacklevel=3,
        )
        return event_t, y_event
    value = event(time, y_event)
    moved = time - (value - value.detach()) / slope
    return moved.to(event_t.device, event_t.dtype), y_event + f_event * (moved - time)
