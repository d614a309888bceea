"""Fixed-grid Adams methods: ``explicit_adams`` (Adams–Bashforth) and ``implicit_adams`` (an Adams–Bashforth
predictor and the Adams–Moulton corrector one order higher, iterated by functional iteration).

Coefficients for variable step sizes. A step from ``t_n`` to ``t_n + h`` integrates the polynomial that
interpolates the derivatives ``f`` kept from earlier steps, at ``t_n, t_{n-1}, ...`` (Adams–Bashforth), or at
``t_n + h`` and those (Adams–Moulton): ``y_{n+1} = y_n + h * sum_j w_j f_j``, where ``w_j`` is the integral over
``[0, 1]`` of the ``j``-th Lagrange basis polynomial through the nodes ``x = (s - t_n) / h`` (Hairer, Nørsett &
Wanner, *Solving ODEs I*, III.1 and III.5). On a uniform grid these are the classical coefficients; where the
spacing changes (from one output interval to the next, or on an uneven grid of output times) they stay exact.

Start-up: while the history is too short for the full order, steps are explicit Runge–Kutta steps (RK4 as in
torchdiffeq for ``max_order`` up to 5; DOP853's eighth-order solution above). Their local errors,
``O(h^(q+1))`` for an order-``q`` start-up method, enter the global error once each, so the global order stays
``max_order`` (up to 9: above it, the start-up's eighth order bounds it).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .method import StepMethod
from .options import Names, SettingError, SolverOptions, check_count
from .step import RHS, StageList, Step, rk_step, weighted_sum
from .tableau import ButcherTableau

MAX_ORDER = 12  # torchdiffeq's bound: higher Adams formulas have vanishing stability regions
DEFAULT_MAX_ORDER = 4  # the classical fourth-order pair, whose global order the RK4 start-up keeps
DEFAULT_MAX_ITERS = 4  # torchdiffeq's
ROUNDING_ULPS = 8  # a corrector update within this many units of rounding of the state counts as converged


@cache
def _gauss_legendre(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre points and weights on ``[0, 1]``: exact for polynomials of degree below ``2 * count``."""
    points, weights = np.polynomial.legendre.leggauss(count)
    return (points + 1.0) / 2.0, weights / 2.0


def lagrange_integrals(nodes: Sequence[float]) -> tuple[float, ...]:
    """``integral_0^1 L_j(x) dx`` for each of the distinct ``nodes``, ``L_j`` the Lagrange basis polynomial that
    is 1 at ``nodes[j]`` and 0 at the others; exact to rounding (Gauss–Legendre quadrature of the degree
    ``len(nodes) - 1`` products, evaluated factor by factor, in float64)."""
    x = np.asarray(nodes, dtype=np.float64)
    points, weights = _gauss_legendre(max(1, math.ceil(len(x) / 2)))
    others = ~np.eye(len(x), dtype=bool)
    numerators = np.where(others[:, None, :], points[None, :, None] - x[None, None, :], 1.0).prod(axis=2)
    denominators = np.where(others, x[:, None] - x[None, :], 1.0).prod(axis=1)
    return tuple((numerators @ weights / denominators).tolist())


def adams_weights(times: Sequence[float], t: float, h: float) -> tuple[float, ...]:
    """The weights of ``f`` at ``times`` in the step from ``t`` to ``t + h``: ``y1 = y0 + h * sum_j w_j f_j``."""
    return lagrange_integrals([(s - t) / h for s in times])


def _check_max_order(options: Mapping[str, Any], names: Names) -> None:
    value = options.get("max_order", DEFAULT_MAX_ORDER)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ORDER:
        raise SettingError(
            f"{names('max_order')} must be an integer from 1 to {MAX_ORDER} (the order of the "
            f"highest-order Adams formula used; default {DEFAULT_MAX_ORDER}), got {value!r}",
            "max_order",
        )


class AdamsMethod(StepMethod):
    """An Adams method on the fixed grid; ``starters`` are the explicit tableaus for the start-up, lowest order
    first: the first whose order is at least ``max_order - 1`` (else the last) takes the start-up steps."""

    multistep = True
    order = DEFAULT_MAX_ORDER
    option_keys: tuple[str, ...] = ("max_order",)

    def __init__(self, starters: Sequence[ButcherTableau]):
        self.starters = tuple(starters)

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        _check_max_order(options, names)

    def history_length(self, max_order: int) -> int:
        """How many derivatives a full-order step uses from earlier points (its own start included)."""
        raise NotImplementedError

    def starter(self, max_order: int) -> ButcherTableau:
        """The start-up method: of order at least ``max_order - 1`` where one is given."""
        return next((tableau for tableau in self.starters if tableau.order >= max_order - 1), self.starters[-1])

    def stepper(self, rhs: RHS, y0: Tensor, opts: SolverOptions) -> AdamsStepper:
        return AdamsStepper(self, rhs, opts)

    def advance(self, stepper: AdamsStepper, t: float, y: Tensor, h: float) -> Tensor:
        """The new state of a full-order step from ``(t, y)``, the history holding ``f(t, y)`` first."""
        raise NotImplementedError


class AdamsBashforth(AdamsMethod):
    """``explicit_adams``: the Adams–Bashforth formula of order ``max_order`` (as many earlier derivatives)."""

    name = "explicit_adams"

    def history_length(self, max_order: int) -> int:
        return max_order

    def advance(self, stepper: AdamsStepper, t: float, y: Tensor, h: float) -> Tensor:
        return stepper.extrapolate(t, y, h)


class AdamsBashforthMoulton(AdamsMethod):
    """``implicit_adams``: the Adams–Bashforth predictor of order ``max_order - 1`` (Euler for ``max_order`` 1),
    then the Adams–Moulton corrector of order ``max_order`` iterated until two iterates agree within
    ``rtol``/``atol`` (or the state's rounding) element by element, at most ``max_iters`` evaluations."""

    name = "implicit_adams"
    option_keys = ("max_order", "max_iters")

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        _check_max_order(options, names)
        check_count(names, options, "max_iters", "the most corrector evaluations per step", DEFAULT_MAX_ITERS)

    def history_length(self, max_order: int) -> int:
        return max(1, max_order - 1)

    def advance(self, stepper: AdamsStepper, t: float, y: Tensor, h: float) -> Tensor:
        return stepper.correct(t, y, h, stepper.extrapolate(t, y, h))


class AdamsStepper:
    """One solve's steps: keeps ``(t, f)`` of the latest steps' starts, newest first, in one direction of time.
    Under autograd the kept derivatives carry their graphs, so gradients flow through the history."""

    def __init__(self, method: AdamsMethod, rhs: RHS, opts: SolverOptions):
        self.method, self.rhs, self.opts = method, rhs, opts
        self.max_order = opts.method_options.get("max_order", DEFAULT_MAX_ORDER)
        self.max_iters = opts.method_options.get("max_iters", DEFAULT_MAX_ITERS)
        self.full = method.history_length(self.max_order)  # the history's length for a full-order step
        self.history: deque[tuple[float, Tensor]] = deque(maxlen=self.full)
        self.start = method.starter(self.max_order)
        self.warned = False

    def __call__(self, t: float, y: Tensor, h: float, f0: Tensor | None) -> Step:
        f0 = self.rhs(t, y) if f0 is None else f0
        self.history.appendleft((t, f0))
        if len(self.history) < self.full:
            return rk_step(self.rhs, self.start, t, y, h, f0)
        return Step(t=t, h=h, y0=y, y1=self.method.advance(self, t, y, h), k=StageList([f0]))

    def extrapolate(self, t: float, y: Tensor, h: float) -> Tensor:
        """The Adams–Bashforth step over the whole history."""
        times, derivatives = zip(*self.history)
        total = weighted_sum(adams_weights(times, t, h), derivatives)
        assert total is not None  # the weights sum to 1
        return y.add(total, alpha=h)

    def correct(self, t: float, y: Tensor, h: float, predicted: Tensor) -> Tensor:
        """The Adams–Moulton corrector from ``predicted`` by functional iteration; the last iterate when
        ``max_iters`` evaluations do not converge (with a warning, once per solve)."""
        history = list(self.history)[: self.max_order - 1]
        weights = adams_weights([t + h] + [s for s, _ in history], t, h)
        total = weighted_sum(weights[1:], [f for _, f in history])
        known = y if total is None else y.add(total, alpha=h)
        current = predicted
        for _ in range(self.max_iters):
            previous = current
            current = known.add(self.rhs(t + h, previous), alpha=h * weights[0])
            if self._converged(previous, current):
                return current
        self._warn(t + h, h)
        return current

    def _converged(self, previous: Tensor, current: Tensor) -> bool:
        with torch.no_grad():
            rtol = max(self.opts.rtol, ROUNDING_ULPS * torch.finfo(current.dtype).eps)
            scale = torch.maximum(previous.abs(), current.abs()).mul_(rtol).add_(self.opts.atol)
            return bool(((current - previous).abs() <= scale).all())

    def _warn(self, t: float, h: float) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"implicit_adams: the corrector did not converge within max_iters={self.max_iters} evaluations at "
                f"t={t!r} (step size {h!r}); the last iterate is kept (a valid predictor-corrector step, less "
                "accurate). Raise the option 'max_iters', take a smaller step_size or loosen rtol/atol; later "
                "steps of this solve are not reported",
                RuntimeWarning,
                stacklevel=2,
            )
