"""Dense output: the solution inside an accepted step, ``y(t + theta * h)`` for ``0 <= theta <= 1``."""
from __future__ import annotations

from torch import Tensor

from .step import RHS, Step, combine
from .tableau import ButcherTableau


def dense_stages(rhs: RHS, tableau: ButcherTableau, step: Step) -> list[Tensor]:
    """The step's stages followed by the extra stages its continuous extension needs (evaluated here)."""
    k = list(step.k)
    for a_i, c_i in zip(tableau.dense_a, tableau.dense_c):
        k.append(rhs(step.t + c_i * step.h, combine(step.y0, step.h, a_i, k)))
    return k


def dense_output(tableau: ButcherTableau, step: Step, k: list[Tensor], theta: float) -> Tensor:
    """``y0 + h * sum_j b_j(theta) k_j`` with ``k`` from ``dense_stages``."""
    weights = [sum(p * theta ** (q + 1) for q, p in enumerate(row)) for row in tableau.dense]
    return combine(step.y0, step.h, weights, k)
