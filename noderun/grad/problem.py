"""What a gradient mode needs to know about one ``odeint`` call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from ..errors import SolverError
from ..solvers.callbacks import StepCallbacks
from ..solvers.control import Norm, channel_norm, rms_norm
from ..solvers.events import EventFunction, EventSolution
from ..solvers.integrate import integrate
from ..solvers.layout import Layout
from ..solvers.options import SolverOptions
from ..solvers.rhs import CountingRHS
from ..solvers.stats import SolveStats


@dataclass(frozen=True)
class ODEProblem:
    """``func``, the output times (floats), the validated forward options and the stats to fill.

    ``layout``: for a tuple state, how its tensors make up the flat state that ``func`` (then the
    flattened function) takes; ``None`` for a single tensor.
    """

    func: Callable[[Tensor, Tensor], Tensor]
    times: list[float]
    options: SolverOptions
    stats: SolveStats
    layout: Layout | None = None
    callbacks: StepCallbacks | None = None  # func's step callbacks for the forward solve
    adjoint_callbacks: StepCallbacks | None = None  # and for the adjoint's backward solve

    def rhs(self, like: Tensor, func: Callable | None = None) -> CountingRHS:
        """A counting right-hand side of ``func`` (default: the problem's) with time in ``like``'s dtype."""
        return CountingRHS(func or self.func, like.dtype, like.device)

    def solve(self, y0: Tensor) -> Tensor:
        """The forward solve (shared or per-sample step control), counted in ``stats``: ``(len(times), *y0.shape)``."""
        rhs = self.rhs(y0)
        sol = integrate(rhs, y0, self.times, self.options, self.norm, callbacks=self.callbacks)
        self.stats.add_forward(rhs.calls, sol.accepted, sol.rejected, sol.work)
        if sol.sample_steps is not None:
            self.stats.sample_steps = sol.sample_steps
        return torch.stack(sol.ys)

    def solve_until_event(self, y0: Tensor, event: EventFunction) -> EventSolution:
        """The solve from ``times[0]`` in the direction of ``times[1]`` until ``event`` (on the flat state),
        counted in ``stats``; a ``SolverError`` when none is found within the step budget says so."""
        rhs = self.rhs(y0)
        try:
            sol = integrate(rhs, y0, self.times, self.options, self.norm, callbacks=self.callbacks, event=event)
        except SolverError as error:
            raise SolverError(
                f"no event found: event_fn(t, y) kept its sign from t={self.times[0]!r} on, in the "
                f"direction of t[1]={self.times[1]!r}, until the solve stopped: {error}",
                nonfinite=error.nonfinite,
            ) from error
        self.stats.add_forward(rhs.calls, sol.accepted, sol.rejected, sol.work)
        return cast(EventSolution, sol)  # integrate returns an EventSolution when given an event

    @property
    def norm(self) -> Norm:
        """The forward error norm on the flat state. A single tensor: RMS unless the user passed a callable.
        A tuple: the largest RMS norm over its tensors, the RMS over all with ``norm="rms"``, or the user's
        callable given the tuple (each tensor in its shape and dtype)."""
        norm, layout = self.options.norm, self.layout
        if layout is None:
            return norm if callable(norm) else rms_norm
        if callable(norm):
            return lambda flat: norm(layout.unflatten(flat))
        return channel_norm(layout.sizes) if norm is None and not layout.batch_first else rms_norm

    @property
    def channels(self) -> tuple[int, ...] | None:
        """The sizes of the consecutive tensors of the flat state, for norms taken tensor by tensor;
        ``None`` when the state is one channel (a single tensor, or a tuple flattened batch first)."""
        layout = self.layout
        return layout.sizes if layout is not None and not layout.batch_first else None
