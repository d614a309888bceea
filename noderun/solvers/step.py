"""One generic explicit Runge–Kutta step for any Butcher tableau."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from torch import Tensor

from .tableau import ButcherTableau

RHS = Callable[[float, Tensor], Tensor]


@dataclass
class Step:
    """A computed step from ``(t, y0)`` to ``(t + h, y1)`` with its stage derivatives ``k``."""

    t: float
    h: float
    y0: Tensor
    y1: Tensor
    k: list[Tensor]


def weighted_sum(weights: Sequence[float], k: Sequence[Tensor]) -> Tensor | None:
    """``sum_j weights[j] * k[j]`` over the non-zero weights; ``None`` when all are zero."""
    total = None
    for w, k_j in zip(weights, k):
        if w != 0.0:
            total = k_j * w if total is None else total.add(k_j, alpha=w)
    return total


def combine(y: Tensor, h: float, weights: Sequence[float], k: Sequence[Tensor]) -> Tensor:
    """``y + h * sum_j weights[j] * k[j]``."""
    total = weighted_sum(weights, k)
    return y if total is None else y.add(total, alpha=h)


def rk_step(rhs: RHS, tableau: ButcherTableau, t: float, y0: Tensor, h: float, f0: Tensor | None) -> Step:
    """Take one step of ``tableau`` of size ``h`` (negative when integrating backwards).

    ``f0`` is ``rhs(t, y0)`` when already known (FSAL, or the previous step's end);
    otherwise it is evaluated here. For an FSAL tableau the last stage is ``rhs(t + h, y1)``
    and ``y1`` is exactly the point it was evaluated at.
    """
    k = [rhs(t, y0) if f0 is None else f0]
    last_input = y0
    for a_i, c_i in zip(tableau.a[1:], tableau.c[1:]):
        last_input = combine(y0, h, a_i, k)
        k.append(rhs(t + c_i * h, last_input))
    y1 = last_input if tableau.fsal else combine(y0, h, tableau.b, k)
    return Step(t=t, h=h, y0=y0, y1=y1, k=k)


def error_estimate(tableau: ButcherTableau, step: Step) -> Tensor:
    """The embedded local error estimate ``h * sum_j b_err[j] * k[j]``."""
    return weighted_sum(tableau.b_err, step.k) * step.h
