"""One generic explicit Runge–Kutta step for any Butcher tableau, and the two ways of holding its stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .tableau import ButcherTableau

if TYPE_CHECKING:
    from .method import Adaptive

RHS = Callable[[float, Tensor], Tensor]


def weighted_sum(weights: Sequence[float], k: Sequence[Tensor]) -> Tensor | None:
    """``sum_j weights[j] * k[j]`` over the non-zero weights; ``None`` when all are zero."""
    total = None
    for w, k_j in zip(weights, k):
        if w != 0.0:
            total = k_j * w if total is None else total.add(k_j, alpha=w)
    return total


class StageList:
    """A step's stage derivatives as a list of tensors: every operation is one autograd can record."""

    def __init__(self, k: Sequence[Tensor] = ()):
        self.k: list[Tensor] = list(k)

    def start(self, f0: Tensor) -> None:
        self.k = [f0]

    def append(self, k_j: Tensor) -> None:
        self.k.append(k_j)

    def __getitem__(self, j: int) -> Tensor:
        return self.k[j]

    def combine(self, y: Tensor, h: float, weights: Sequence[float]) -> Tensor:
        """``y + h * sum_j weights[j] * k[j]``."""
        total = weighted_sum(weights, self.k)
        return y if total is None else y.add(total, alpha=h)

    def weighted(self, weights: Sequence[float], scale: float) -> Tensor:
        """``scale * sum_j weights[j] * k[j]``."""
        total = weighted_sum(weights, self.k)
        assert total is not None  # an error estimate's weights are not all zero
        return total * scale


class StageBuffer(StageList):
    """Stages written into one preallocated ``(stages, numel)`` tensor, reused from step to step, so
    that a stage input, a new state or an error estimate is one fused ``addmv`` whatever the number of
    stages. Only for solves without a graph: the buffer is overwritten in place."""

    def __init__(self, tableau: ButcherTableau, like: Tensor):  # every StageList method is replaced
        rows = tableau.stages + len(tableau.dense_c)
        self.buffer = like.new_empty(rows, like.numel())
        self.like = like
        self.rows = self.buffer.view(rows, *like.shape).unbind(0)
        self.transposed = self.buffer.t()
        self.plans: dict[tuple, tuple[Tensor, Tensor]] = {}  # a tableau's weights -> (their columns, as a tensor)
        self.count = 0
        self.base: tuple[Tensor, Tensor] | None = None  # the last state combined from, and its flat view

    def start(self, f0: Tensor) -> None:
        if f0 is not self.rows[0]:
            self.rows[0].copy_(f0)
        self.count = 1

    def append(self, k_j: Tensor) -> None:
        self.rows[self.count].copy_(k_j)
        self.count += 1

    def __getitem__(self, j: int) -> Tensor:
        return self.rows[j]

    def combine(self, y: Tensor, h: float, weights: Sequence[float]) -> Tensor:
        if self.base is None or self.base[0] is not y:
            self.base = (y, y.reshape(-1))
        columns, weight_tensor = self._plan(weights)
        return torch.addmv(self.base[1], columns, weight_tensor, alpha=h).view_as(self.like)

    def weighted(self, weights: Sequence[float], scale: float) -> Tensor:
        columns, weight_tensor = self._plan(weights)
        return torch.addmv(columns[:, 0], columns, weight_tensor, beta=0, alpha=scale).view_as(self.like)

    def _plan(self, weights: Sequence[float]) -> tuple[Tensor, Tensor]:
        """The stage columns ``weights`` apply to and the weights as a tensor: looked up once per solve for
        a tableau's own weights (tuples), made every time for computed ones (dense output)."""
        if not isinstance(weights, tuple):
            return self.transposed[:, : len(weights)], self.buffer.new_tensor(weights)
        if weights not in self.plans:
            self.plans[weights] = (self.transposed[:, : len(weights)], _weight_tensor(weights, self.buffer))
        return self.plans[weights]


_WEIGHTS: dict[tuple, Tensor] = {}


def _weight_tensor(weights: tuple[float, ...], like: Tensor) -> Tensor:
    """A tableau's ``weights`` as a tensor of ``like``'s dtype and device, made once per process."""
    key = (weights, like.dtype, like.device)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = like.new_tensor(weights)
    return _WEIGHTS[key]


def stage_store(tableau: ButcherTableau, y0: Tensor) -> StageList:
    """A buffer when no graph is being recorded, else a list."""
    return StageList() if torch.is_grad_enabled() else StageBuffer(tableau, y0)


@dataclass
class Step:
    """A computed step from ``(t, y0)`` to ``(t + h, y1)`` with its stage derivatives ``k``."""

    t: float
    h: float
    y0: Tensor
    y1: Tensor
    k: StageList
    error_size: Tensor | None = None  # the error ratio, when the step computed it itself (solvers.fused)
    failure: str | None = None  # why the step could not be computed (an implicit step's Newton failure): rejected
    error: Tensor | None = None  # the local error estimate, when the step made it itself (radau5's filtered one)


def rk_step(
    rhs: RHS,
    tableau: ButcherTableau,
    t: float,
    y0: Tensor,
    h: float,
    f0: Tensor | None,
    stages: StageList | None = None,
    fsal_stage: bool = True,
) -> Step:
    """Take one step of ``tableau`` of size ``h`` (negative when integrating backwards).

    ``f0`` is ``rhs(t, y0)`` when already known (FSAL, the previous step's end, or the first stage of
    a rejected attempt from the same point); otherwise it is evaluated here. For an FSAL tableau the
    last stage is ``rhs(t + h, y1)`` and ``y1`` is exactly the point it was evaluated at; without
    ``fsal_stage`` that stage, which only the error estimate and dense output use, is not evaluated.
    ``stages`` (default: a new list) receives the stages.
    """
    k = StageList() if stages is None else stages
    k.start(rhs(t, y0) if f0 is None else f0)
    last_input = y0
    evaluated = tableau.stages if fsal_stage or not tableau.fsal else tableau.stages - 1
    for a_i, c_i in zip(tableau.a[1:evaluated], tableau.c[1:evaluated]):
        last_input = k.combine(y0, h, a_i)
        k.append(rhs(t + c_i * h, last_input))
    y1 = last_input if tableau.fsal and evaluated == tableau.stages else k.combine(y0, h, tableau.b[:evaluated])
    return Step(t=t, h=h, y0=y0, y1=y1, k=k)


def error_estimate(tableau: Adaptive, step: Step) -> Tensor:
    """The embedded local error estimate ``h * sum_j b_err[j] * k[j]``, or the one the step made itself."""
    return step.k.weighted(tableau.b_err, step.h) if step.error is None else step.error
