"""Dense output: the solution inside an accepted step, ``y(t + theta * h)`` for ``0 <= theta <= 1``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from .step import RHS, Step

if TYPE_CHECKING:
    from .method import Adaptive


def dense_stages(rhs: RHS, tableau: Adaptive, step: Step) -> None:
    """Evaluate the extra stages the step's continuous extension needs, appending them to ``step.k``."""
    for a_i, c_i in zip(tableau.dense_a, tableau.dense_c):
        step.k.append(rhs(step.t + c_i * step.h, step.k.combine(step.y0, step.h, a_i)))


def dense_output(tableau: Adaptive, step: Step, theta: float) -> Tensor:
    """``y0 + h * sum_j b_j(theta) k_j``, after ``dense_stages``."""
    weights = [sum(p * theta ** (q + 1) for q, p in enumerate(row)) for row in tableau.dense]
    return step.k.combine(step.y0, step.h, weights)
