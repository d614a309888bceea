"""Step callbacks, as torchdiffeq calls them: methods of ``func`` named ``callback_step`` (before every step
attempt), ``callback_accept_step`` and ``callback_reject_step`` (after an adaptive method's decision), and
the same names ending in ``_adjoint`` for the adjoint's backward solve. Each is called as
``callback(t0, y0, dt)``: the step's start time and state and its size (``t0`` and ``dt`` as float64 tensors
on the state's device)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .method import SolveMethod

NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")


@dataclass(frozen=True)
class StepCallbacks:
    """The callbacks one solve calls; ``state`` turns the solver's flat state into the user's (a tuple's tensors)."""

    step: Callable | None
    accept: Callable | None
    reject: Callable | None
    state: Callable[[Tensor], Any]

    def before(self, t: float | Tensor, y: Tensor, h: float | Tensor) -> None:
        if self.step is not None:
            self.step(*self._arguments(t, y, h))

    def after(self, t: float | Tensor, y: Tensor, h: float | Tensor, accepted: bool | Tensor) -> None:
        """After the decision on a step (per-sample clocks: accepted when any sample accepted its step)."""
        decided = bool(accepted.any()) if isinstance(accepted, Tensor) else accepted
        callback = self.accept if decided else self.reject
        if callback is not None:
            callback(*self._arguments(t, y, h))

    def _arguments(self, t, y: Tensor, h) -> tuple:
        def as_tensor(x):
            return x if isinstance(x, Tensor) else torch.scalar_tensor(x, dtype=torch.float64, device=y.device)

        return as_tensor(t), self.state(y), as_tensor(h)


def step_callbacks(
    func: Any, method: Any, state: Callable[[Tensor], Any], adjoint: bool = False
) -> StepCallbacks | None:
    """The callbacks ``func`` defines for the forward (or, with ``adjoint``, the backward) solve by ``method``;
    ``None`` when it defines none. Warns about those ``method`` never calls: a fixed-step method calls only
    ``callback_step``, a method that solves the problem at once (``scipy_solver``) none."""
    suffix = "_adjoint" if adjoint else ""
    found = {name: _attribute(func, name + suffix) for name in NAMES}
    found = {name: callback for name, callback in found.items() if callable(callback)}
    if not found:
        return None
    called = () if isinstance(method, SolveMethod) else NAMES if method.adaptive else NAMES[:1]
    ignored = sorted(name + suffix for name in found if name not in called)
    if ignored:
        warnings.warn(
            f"method {method.name!r} does not call the step callbacks {ignored} of func "
            f"({'none' if not called else ', '.join(name + suffix for name in called)} supported)",
            RuntimeWarning,
            stacklevel=4,
        )
    return StepCallbacks(*(found.get(name) if name in called else None for name in NAMES), state=state)


def _attribute(func: Any, name: str) -> Any:
    """``func``'s attribute ``name`` or ``None``, looked up in its own ``__dict__`` and its class only (an
    ``nn.Module``'s ``__getattr__`` makes a plain ``getattr`` of a missing name cost microseconds per solve)."""
    own = getattr(func, "__dict__", {})
    if name in own:
        return own[name]
    return getattr(func, name) if hasattr(type(func), name) else None
