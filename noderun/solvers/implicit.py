"""Implicit Runge–Kutta methods on a fixed grid: the tableau (``ImplicitTableau``, a ``StepMethod``) and its
step, which solves the stage equations ``K_i = f(t + c_i h, y0 + h sum_j a_ij K_j)`` by Newton's method.

The stages are solved in groups, in order: one stage at a time when ``a`` is lower triangular (diagonally
implicit methods: an ``n x n`` system per stage, and a stage whose diagonal coefficient is zero is
evaluated directly), all stages together otherwise (an ``sn x sn`` system). Each group is solved by the
simplified Newton iteration: the matrix ``I - h (A_g ⊗ J)``, ``J = df/dy`` at the step's start, is
factorised once per step (and shared by stages with the same diagonal coefficient) and reused by every
iteration. The Jacobian is dense (``solvers.jacobian``), which suits states up to a few thousand elements;
a batched state is solved as one system.

Gradients: the iteration runs without a graph. When a graph is being recorded, one more Newton update is
taken with it, ``K = K* - M⁻¹ G(K*)``, where ``G(K) = K - f(t + c h, y0 + h A K)`` is the stage residual
and ``M`` its exact Jacobian at the converged ``K*`` (detached): its derivative is the one the implicit
function theorem gives, ``dK/dx = -M⁻¹ ∂G/∂x``, for ``x`` the state or the parameters of ``f``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor

from ..errors import SolverError
from .jacobian import Jacobian
from .method import StepMethod
from .options import Names, SolverOptions, check_count
from .step import RHS, StageList, Step

_TOLERANCE = 1e-12
MAX_DENSE_STATE = 16_384  # elements: a dense Jacobian of 2 GiB in float64, one evaluation per column by differences
DEFAULT_MAX_ITERS = 50  # Newton iterations per group of stages and step
ROUNDING_UNITS = 16  # no Newton update is asked to be finer than this many units of rounding of the stage state


@dataclass(frozen=True)
class ImplicitTableau(StepMethod):
    """An implicit Runge–Kutta method in textbook notation: ``a`` is the full ``s x s`` coefficient matrix
    (row ``i`` sums to ``c[i]``), ``b`` the solution weights (summing to 1), ``order`` the classical order.

    Its one option, ``max_iters`` (a positive integer, default 50), bounds the Newton iterations of each
    group of stages in a step; a step that does not converge within it raises ``SolverError``.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    option_keys: ClassVar[tuple[str, ...]] = ("max_iters",)

    def __post_init__(self) -> None:
        s = self.stages
        if len(self.a) != s or any(len(row) != s for row in self.a):
            self._fail(f"a must be a full {s} x {s} matrix")
        if len(self.b) != s:
            self._fail(f"b has {len(self.b)} weights for {s} stages")
        for i, (row, c_i) in enumerate(zip(self.a, self.c)):
            if abs(sum(row) - c_i) > _TOLERANCE:
                self._fail(f"row {i} of a sums to {sum(row)!r}, not c[{i}] = {c_i!r}")
        if abs(sum(self.b) - 1.0) > _TOLERANCE:
            self._fail(f"b sums to {sum(self.b)!r}, not 1")

    def _fail(self, message: str) -> None:
        raise ValueError(f"invalid implicit Runge–Kutta tableau {self.name!r}: {message}")

    @property
    def stages(self) -> int:
        return len(self.c)

    @cached_property
    def diagonally_implicit(self) -> bool:
        """Whether ``a`` is lower triangular, so that each stage can be solved after the ones before it."""
        return all(self.a[i][j] == 0.0 for i in range(self.stages) for j in range(i + 1, self.stages))

    @cached_property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """The stages solved together, in order: one at a time for a diagonally implicit method, else all."""
        if self.diagonally_implicit:
            return tuple((i,) for i in range(self.stages))
        return (tuple(range(self.stages)),)

    def explicit(self, group: tuple[int, ...]) -> bool:
        """Whether ``group`` is one stage that depends on earlier stages only (a zero diagonal coefficient)."""
        return len(group) == 1 and self.diagonally_implicit and self.a[group[0]][group[0]] == 0.0

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        check_count(names, options, "max_iters", "Newton iterations per step", DEFAULT_MAX_ITERS)

    def stepper(self, rhs: RHS, y0: Tensor, opts: SolverOptions) -> ImplicitStepper:
        return ImplicitStepper(self, rhs, y0, opts)


class ImplicitStepper:
    """``(t, y0, h, f0) -> Step`` for one solve of an ``ImplicitTableau``; ``f0``, when given, is ``rhs(t, y0)``.

    Newton's iteration stops when the root mean square of the scaled update of the stage states,
    ``h ΔK_i / (atol + rtol |y0| + 16 eps (|y0| + |h K_i|))``, is at most 1 (``eps``: the state dtype's
    machine epsilon, so that a tolerance below the dtype's resolution still converges).
    """

    def __init__(self, tableau: ImplicitTableau, rhs: RHS, like: Tensor, opts: SolverOptions):
        if like.numel() > MAX_DENSE_STATE:
            raise ValueError(f"method {tableau.name!r} forms the dense Jacobian of the state, which here has "
                             f"{like.numel():,} elements (an adjoint's backward state counts the parameters too); "
                             f"implicit methods take states of at most {MAX_DENSE_STATE:,}: use an explicit method "
                             "or a smaller state")
        self.tableau, self.rhs = tableau, rhs
        self.max_iters = opts.method_options.get("max_iters", DEFAULT_MAX_ITERS)
        self.rtol, self.atol = opts.rtol, opts.atol
        self.floor = ROUNDING_UNITS * torch.finfo(like.dtype).eps
        self.jacobian = Jacobian(rhs)
        self.linalg_dtype = torch.promote_types(like.dtype, torch.float32)  # LU needs float32 at least
        self.coefficients = {group: tuple(tuple(tableau.a[i][j] for j in group) for i in group)
                             for group in tableau.groups}  # also the key of a group's factorised matrix
        self.blocks = {group: like.new_tensor(rows) for group, rows in self.coefficients.items()}

    def __call__(self, t: float, y0: Tensor, h: float, f0: Tensor | None) -> Step:
        tableau = self.tableau
        f0 = self.rhs(t, y0) if f0 is None else f0
        y0_flat, k = y0.reshape(-1), []
        jacobian, factors = None, {}  # the step's Jacobian at (t, y0) and factorised matrices, made when needed
        for group in tableau.groups:
            base = torch.stack([self._known_part(y0_flat, h, k, i) for i in group])
            if tableau.explicit(group):
                i = group[0]
                k.append(f0.reshape(-1) if i == 0 else self._evaluate(t, h, group, base, y0)[0])
                continue
            if jacobian is None:
                jacobian = self.jacobian(t, y0, f0)
            block = self.blocks[group]
            key = self.coefficients[group]
            if key not in factors:
                factors[key] = self._factorise(block, jacobian.unsqueeze(0), h, t)
            with torch.no_grad():
                converged = self._newton(t, y0, h, group, base.detach(), factors[key], f0.detach().reshape(-1))
            k.extend(self._attach_gradient(t, y0, h, group, base, converged).unbind(0))
        stages = StageList([k_i.view_as(y0) for k_i in k])
        return Step(t=t, h=h, y0=y0, y1=stages.combine(y0, h, tableau.b), k=stages)

    def _known_part(self, y0_flat: Tensor, h: float, k: list[Tensor], i: int) -> Tensor:
        """``y0 + h sum_j a_ij K_j`` over the stages ``j`` already solved."""
        total = y0_flat
        for j, k_j in enumerate(k):
            if self.tableau.a[i][j] != 0.0:
                total = total.add(k_j, alpha=h * self.tableau.a[i][j])
        return total

    def _evaluate(self, t: float, h: float, group: tuple[int, ...], states: Tensor, like: Tensor) -> Tensor:
        """``f(t + c_i h, states[q])`` for the stages ``i`` of ``group``, flat: ``(len(group), n)``."""
        c = self.tableau.c
        return torch.stack([self.rhs(t + c[i] * h, state.view_as(like)).reshape(-1)
                            for i, state in zip(group, states)])

    def _factorise(self, block: Tensor, jacobians: Tensor, h: float, t: float) -> tuple[Tensor, Tensor]:
        """The LU factors of ``M = I - h [a_ij J_i]`` (block ``(i, j)``) for a group's coefficient ``block``
        and one Jacobian per stage (or one shared by all: ``jacobians`` of shape ``(1, n, n)``)."""
        m, n = len(block), jacobians.shape[-1]
        block, jacobians = block.to(self.linalg_dtype), jacobians.to(self.linalg_dtype).expand(m, n, n)
        coupling = (block[:, :, None, None] * jacobians[:, None]).permute(0, 2, 1, 3).reshape(m * n, m * n)
        matrix = torch.eye(m * n, dtype=self.linalg_dtype, device=block.device) - h * coupling
        lu, pivots, info = torch.linalg.lu_factor_ex(matrix)
        if int(info.max()) > 0:
            raise SolverError(f"the Newton matrix I - h A⊗J of {self.tableau.name!r} is singular in the step from "
                              f"t={t!r} of size {h!r}; use a smaller step_size")
        return lu, pivots

    def _solve(self, factors: tuple[Tensor, Tensor], residual: Tensor) -> Tensor:
        """``M⁻¹ residual`` for a ``(m, n)`` residual, in its dtype."""
        flat = residual.reshape(-1, 1).to(self.linalg_dtype)
        return torch.linalg.lu_solve(*factors, flat).view_as(residual).to(residual.dtype)

    def _newton(self, t: float, y0: Tensor, h: float, group: tuple[int, ...], base: Tensor,
                factors: tuple[Tensor, Tensor], start: Tensor) -> Tensor:
        """The converged stage derivatives of ``group``, ``(len(group), n)``, from ``K_i = start``."""
        block = self.blocks[group]
        y0_abs = y0.detach().reshape(-1).abs()
        scale = self.atol + (self.rtol + self.floor) * y0_abs
        stages = start.expand(len(group), -1).clone()
        for _ in range(self.max_iters):
            values = self._evaluate(t, h, group, base + h * (block @ stages), y0)
            update = self._solve(factors, values - stages)
            stages = stages + update
            size = float(torch.linalg.vector_norm(h * update / (scale + self.floor * (h * stages).abs())))
            size /= math.sqrt(update.numel())
            if not math.isfinite(size):
                raise self._failure(t, h, "its iterates became non-finite")
            if size <= 1.0:
                return stages
        raise self._failure(t, h, f"it did not converge in {self.max_iters} iterations")

    def _failure(self, t: float, h: float, what: str) -> SolverError:
        return SolverError(f"Newton's method for the implicit stages of {self.tableau.name!r} failed in the step "
                           f"from t={t!r} of size {h!r}: {what}; use a smaller step_size or a larger max_iters")

    def _attach_gradient(self, t: float, y0: Tensor, h: float, group: tuple[int, ...], base: Tensor,
                         converged: Tensor) -> Tensor:
        """``converged`` with the implicit function theorem's gradient: one Newton update with exact
        Jacobians at the converged stages, recorded by autograd (when a graph is being recorded)."""
        if not torch.is_grad_enabled():
            return converged
        block = self.blocks[group]
        states = base + h * (block @ converged)
        values = self._evaluate(t, h, group, states, y0)
        if not values.requires_grad:
            return converged
        c = self.tableau.c
        jacobians = torch.stack([self.jacobian(t + c[i] * h, state.detach().view_as(y0))
                                 for i, state in zip(group, states)])
        with torch.no_grad():
            factors = self._factorise(block, jacobians, h, t)
        return converged + self._solve(factors, values - converged)
