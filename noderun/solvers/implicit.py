"""Implicit Runge–Kutta methods: the tableau (``ImplicitTableau``, a ``StepMethod``) and its step, which solves
the stage equations ``K_i = f(t + c_i h, y0 + h sum_j a_ij K_j)`` by Newton's method.

The stages are solved in groups, in order: one stage at a time when ``a`` is lower triangular (diagonally
implicit methods: an ``n x n`` system per stage, and a stage whose diagonal coefficient is zero is
evaluated directly), all stages together otherwise (an ``sn x sn`` system). Each group is solved by the
simplified Newton iteration: the matrix ``I - h (A_g ⊗ J)``, ``J = df/dy``, is factorised once and reused
by every iteration (and shared by stages with the same diagonal coefficient). ``options["jacobian"]``:
``"dense"`` (default) forms ``J`` over the whole flattened state (``solvers.jacobian``), which suits states
up to a few thousand elements; ``"batch_diagonal"`` forms one block per sample (dim 0), for batches of
independent samples, and solves a small system per sample.

Fixed-step methods take ``J`` at each step's start and iterate until the root mean square of the scaled
update of the stage states, ``h ΔK_i / (atol + rtol |y0| + 16 eps (|y0| + |h K_i|))``, is at most 1
(``eps``: the state dtype's machine epsilon, so that a tolerance below the dtype's resolution still
converges); a step that does not converge raises ``SolverError``.

Adaptive methods (with embedded weights ``b_err``: the ESDIRK methods of ``solvers.stiff_methods``) are
driven by the integration loop's error control like explicit tableaus. They are stiffly accurate with an
explicit first stage, so the last stage is ``f(t + h, y1)``, the next step's first (FSAL), and their dense
output is the cubic Hermite interpolant of the step's ends. Their Newton iteration starts each stage from
the method's predictor (a combination of the stages before it), keeps ``J`` from step to step while the
iteration contracts fast (a contraction rate above ``SLOW_RATE`` takes a new one at the next step) and the
factors while ``h`` and ``J`` are unchanged, and stops when the estimated distance to the solution,
``rate / (1 - rate) * |ΔK|`` in the norm above, is at most ``KAPPA``. When it diverges, produces a
non-finite iterate, meets a singular matrix or does not converge in ``max_iters`` (default 10) iterations,
the step is taken again once with a Jacobian at its start if its own was older, and is otherwise rejected:
the controller shrinks it as after a non-finite error estimate.

Gradients: the iteration runs without a graph. When a graph is being recorded, one more Newton update is
taken with it, ``K = K* - M⁻¹ G(K*)``, where ``G(K) = K - f(t + c h, y0 + h A K)`` is the stage residual
and ``M`` its exact Jacobian at the converged ``K*`` (detached): its derivative is the one the implicit
function theorem gives, ``dK/dx = -M⁻¹ ∂G/∂x``, for ``x`` the state or the parameters of ``f``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol, TypeAlias, cast

import numpy as np
import torch
from torch import Tensor

from ..errors import SolverError
from .jacobian import BlockJacobian, Jacobian
from .krylov import MatrixFreeNewton
from .method import StepMethod
from .options import Names, SettingError, SolverOptions, check_count
from .stats import NewtonWork
from .step import RHS, StageList, Step

_TOLERANCE = 1e-12
MAX_DENSE_STATE = 16_384  # elements: a dense Jacobian of 2 GiB in float64, one evaluation per column by differences
DEFAULT_MAX_ITERS = 50  # Newton iterations per group of stages and step, fixed-step methods
ADAPTIVE_MAX_ITERS = 10  # and adaptive ones, which reject the step instead of failing
ROUNDING_UNITS = 16  # no Newton update is asked to be finer than this many units of rounding of the stage state
KAPPA = 0.01  # adaptive: the Newton error allowed, as a fraction of the step's error tolerance
SLOW_RATE = 0.2  # adaptive: a contraction rate above this takes a new Jacobian at the next step
JACOBIANS = ("dense", "batch_diagonal", "matrix_free")


@dataclass(frozen=True)
class ImplicitTableau(StepMethod):
    """An implicit Runge–Kutta method in textbook notation: ``a`` is the full ``s x s`` coefficient matrix
    (row ``i`` sums to ``c[i]``), ``b`` the solution weights (summing to 1), ``order`` the classical order.

    Adaptive methods add ``b_err`` and ``error_order`` (the order the error estimate's exponent is taken
    from). Diagonally implicit ones (ESDIRK) must be stiffly accurate with an explicit first stage (``a[0]``
    zero, ``a[-1] == b``, ``c[-1] == 1``): ``b_err`` are the solution minus embedded weights (summing to 0)
    and ``predictor`` may give, in row ``i - 1``, the weights of stages ``0 .. i - 1`` (summing to 1) whose
    combination starts stage ``i``'s Newton iteration. Collocation methods (Radau IIA) give Hairer's
    filtered estimate instead: ``error_filter`` ``g`` and ``error_f0`` ``e0`` make the error
    ``(I - h g J)⁻¹ h (e0 f(t, y0 + err0) + sum_j b_err[j] K_j)``, ``err0`` the same with ``f(t, y0)``.

    Options: ``max_iters`` (a positive integer) bounds the Newton iterations of each group of stages in a
    step; ``jacobian`` is ``"dense"`` or ``"batch_diagonal"`` (``solvers.implicit``).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int | None = None
    predictor: tuple[tuple[float, ...], ...] | None = None
    error_f0: float = 0.0
    error_filter: float | None = None
    option_keys: ClassVar[tuple[str, ...]] = ("max_iters", "jacobian")
    dense_a: ClassVar[tuple] = ()  # the Hermite dense output needs no stage beyond the step's
    dense_c: ClassVar[tuple] = ()

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
        self._check_embedded()

    def _check_embedded(self) -> None:
        s = self.stages
        if (self.b_err is None) != (self.error_order is None):
            self._fail("b_err and error_order must be given together")
        if self.b_err is None:
            if self.predictor is not None:
                self._fail("a predictor is for adaptive methods (with b_err)")
            return
        if len(self.b_err) != s or abs(sum(self.b_err) + self.error_f0) > 1e-9:
            self._fail(f"b_err must hold {s} weights summing to -error_f0")
        if self.error_filter is not None:
            a, c = np.array(self.a), np.array(self.c)
            if self.predictor is not None or not all(
                np.allclose(a @ c ** (k - 1), c**k / k, atol=1e-12) for k in range(1, s + 1)
            ):
                self._fail(
                    "a filtered error estimate (error_filter) is for collocation methods, whose dense output "
                    "is their collocation polynomial: a must meet C(s), and no predictor"
                )
            return
        stiffly_accurate = self.c[-1] == 1.0 and all(abs(x - y) <= _TOLERANCE for x, y in zip(self.a[-1], self.b))
        if s < 2 or any(self.a[0]) or not stiffly_accurate or not self.diagonally_implicit:
            self._fail(
                "an adaptive implicit method must be diagonally implicit and stiffly accurate with an explicit "
                "first stage (a[0] zero, a[-1] == b, c[-1] == 1): its dense output is the Hermite cubic of "
                "its ends"
            )
        if self.predictor is not None and (
            len(self.predictor) != s - 1
            or any(len(row) != i + 1 or abs(sum(row) - 1.0) > 1e-9 for i, row in enumerate(self.predictor))
        ):
            self._fail(f"predictor must have {s - 1} rows of lengths 1..{s - 1}, each summing to 1")

    def _fail(self, message: str) -> None:
        raise ValueError(f"invalid implicit Runge–Kutta tableau {self.name!r}: {message}")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return self.b_err is not None

    @property
    def fsal(self) -> bool:  # type: ignore[override]
        """Adaptive ESDIRK methods are FSAL: their last stage is ``f(t + h, y1)``."""
        return self.adaptive and self.error_filter is None

    @cached_property
    def dense(self) -> tuple[tuple[float, ...], ...]:
        """Dense output as weight polynomials of the stages: for a collocation method its collocation
        polynomial, ``b_j(theta)`` the integral from 0 to ``theta`` of the Lagrange basis polynomial of node
        ``c_j``; for an ESDIRK method the cubic Hermite interpolant of ``(y0, f0)`` and ``(y1, f1)`` (``f0``
        the first stage, ``f1`` the last): ``b_j(theta) = b_j (3 theta^2 - 2 theta^3)`` plus
        ``theta - 2 theta^2 + theta^3`` for the first stage and ``theta^3 - theta^2`` for the last."""
        if self.error_filter is not None:
            return tuple(tuple(float(x) for x in basis.integ().coef[1:]) for basis in self.lagrange_basis)
        last = self.stages - 1
        return tuple(
            (float(j == 0), 3 * b_j - 2 * (j == 0) - (j == last), -2 * b_j + (j == 0) + (j == last))
            for j, b_j in enumerate(self.b)
        )

    @cached_property
    def lagrange_basis(self) -> tuple[np.polynomial.Polynomial, ...]:
        """The Lagrange basis polynomials of the nodes ``c``: ``l_j(c_m) = 1`` if ``j == m`` else 0."""
        basis = []
        for j, c_j in enumerate(self.c):
            polynomial = np.polynomial.Polynomial([1.0])
            for m, c_m in enumerate(self.c):
                if m != j:
                    polynomial *= np.polynomial.Polynomial([-c_m, 1.0]) / (c_j - c_m)
            basis.append(polynomial)
        return tuple(basis)

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
        check_count(
            names,
            options,
            "max_iters",
            "Newton iterations per step",
            ADAPTIVE_MAX_ITERS if self.adaptive else DEFAULT_MAX_ITERS,
        )
        if options.get("jacobian", "dense") not in JACOBIANS:
            raise SettingError(
                f"unknown {names('jacobian')}={options['jacobian']!r}; use 'dense' (the whole state), "
                "'batch_diagonal' (one block per sample, for independent samples along dim 0) or "
                "'matrix_free' (Newton–Krylov, for large states)",
                "jacobian",
            )

    def stepper(self, rhs: RHS, y0: Tensor, opts: SolverOptions) -> ImplicitStepper:
        return ImplicitStepper(self, rhs, y0, opts)


class NewtonFailure(Exception):
    """Newton's iteration on a group of stages did not converge; the message says how."""


# A Newton solver's Jacobians and factors are opaque to the stepper, which only hands them back to the solver
# that made them: tensors and LU factors for ``NewtonMatrix``, points and a Krylov operator for ``MatrixFreeNewton``.
Jacobians: TypeAlias = Any
Factors: TypeAlias = Any


class NewtonSolver(Protocol):
    """The linear algebra of the simplified Newton iteration: ``NewtonMatrix`` or ``MatrixFreeNewton``."""

    def jacobians(self, points: list[tuple[float, Tensor, Tensor | None]], /) -> Jacobians: ...
    def factorise(self, block: Tensor, jacobians: Jacobians, h: float, /) -> Factors | None: ...
    def solve(self, factors: Factors, residual: Tensor, /) -> Tensor: ...


class NewtonMatrix:
    """``J`` and the factors of ``M = I - h [a_ij J_i]`` for one solve: over the whole flattened state
    (``"dense"``: ``J`` of shape ``(n, n)``) or one block per sample (``"batch_diagonal"``: ``(batch, d, d)``)."""

    def __init__(self, rhs: RHS, like: Tensor, mode: str, name: str):
        self.per_sample = mode == "batch_diagonal"
        if self.per_sample and like.dim() == 0:
            raise ValueError(
                f"options['jacobian']='batch_diagonal' takes one block per sample along dim 0; "
                f"method {name!r} got a 0-dimensional state: use 'dense'"
            )
        block = like[0].numel() if self.per_sample else like.numel()
        if block > MAX_DENSE_STATE:
            what = "a sample" if self.per_sample else "the state"
            raise ValueError(
                f"method {name!r} forms the dense Jacobian of {what}, which here has {block:,} "
                "elements (an adjoint's backward state counts the parameters too); a dense Jacobian "
                f"takes at most {MAX_DENSE_STATE:,}: use options['jacobian']='matrix_free' "
                "(solver.jacobian in a config; adjoint_options for the adjoint's backward solve), "
                "'batch_diagonal' for independent samples, an explicit method or a smaller state"
            )
        self.jacobian = BlockJacobian(rhs) if self.per_sample else Jacobian(rhs)
        self.batch = len(like) if self.per_sample else 1
        self.linalg_dtype = torch.promote_types(like.dtype, torch.float32)  # LU needs float32 at least

    def jacobians(self, points: list[tuple[float, Tensor, Tensor | None]]) -> Tensor:
        """``J`` at each ``(t, y, f(t, y) or None)``, stacked: ``(len(points), ...)``."""
        return torch.stack([self.jacobian(t, y, f) for t, y, f in points])

    def factorise(self, block: Tensor, jacobians: Tensor, h: float) -> tuple[Tensor, Tensor] | None:
        """The LU factors of ``M`` for a group's coefficient ``block`` and one Jacobian per stage (or one shared
        by all, ``jacobians[0]``); ``None`` when ``M`` is singular."""
        m = len(block)
        block, jacobians = block.to(self.linalg_dtype), jacobians.to(self.linalg_dtype)
        jacobians = jacobians.expand(m, *jacobians.shape[1:])
        if self.per_sample:  # (m, m, batch, d, d) -> (batch, m d, m d)
            batch, d = jacobians.shape[1], jacobians.shape[-1]
            coupling = (block[:, :, None, None, None] * jacobians[:, None]).permute(2, 0, 3, 1, 4)
            coupling = coupling.reshape(batch, m * d, m * d)
        else:
            n = jacobians.shape[-1]
            coupling = (block[:, :, None, None] * jacobians[:, None]).permute(0, 2, 1, 3).reshape(m * n, m * n)
        eye = torch.eye(coupling.shape[-1], dtype=self.linalg_dtype, device=block.device)
        lu, pivots, info = torch.linalg.lu_factor_ex(eye - h * coupling)
        return None if int(info.max()) > 0 else (lu, pivots)

    def solve(self, factors: tuple[Tensor, Tensor], residual: Tensor) -> Tensor:
        """``M⁻¹ residual`` for a ``(m, n)`` residual, in its dtype."""
        m = len(residual)
        flat = residual.to(self.linalg_dtype)
        if self.per_sample:
            flat = flat.view(m, self.batch, -1).transpose(0, 1).reshape(self.batch, -1, 1)
            solved = torch.linalg.lu_solve(*factors, flat).view(self.batch, m, -1).transpose(0, 1)
            return solved.reshape(residual.shape).to(residual.dtype)
        return torch.linalg.lu_solve(*factors, flat.reshape(-1, 1)).view_as(residual).to(residual.dtype)


class ImplicitStepper:
    """``(t, y0, h, f0) -> Step`` for one solve of an ``ImplicitTableau``; ``f0``, when given, is ``rhs(t, y0)``.
    ``work`` counts its Newton iterations, Jacobians and factorisations."""

    def __init__(self, tableau: ImplicitTableau, rhs: RHS, like: Tensor, opts: SolverOptions):
        self.tableau, self.rhs, self.adaptive = tableau, rhs, tableau.adaptive
        mode = opts.method_options.get("jacobian", "dense")
        self.matrix: NewtonSolver = (
            MatrixFreeNewton(rhs, opts.rtol, opts.atol)
            if mode == "matrix_free"
            else NewtonMatrix(rhs, like, mode, tableau.name)
        )
        self.max_iters = opts.method_options.get(
            "max_iters", ADAPTIVE_MAX_ITERS if self.adaptive else DEFAULT_MAX_ITERS
        )
        self.rtol, self.atol = opts.rtol, opts.atol
        self.floor = ROUNDING_UNITS * torch.finfo(like.dtype).eps
        self.coefficients = {
            group: tuple(tuple(tableau.a[i][j] for j in group) for i in group) for group in tableau.groups
        }  # also the key of a group's factorised matrix
        self.blocks: dict[tuple, Tensor] = {group: like.new_tensor(rows) for group, rows in self.coefficients.items()}
        if tableau.error_filter is not None:  # the filtered error estimate's weights and matrix
            self.blocks[("error",)] = like.new_tensor([tableau.b_err])
            self.blocks[("filter",)] = like.new_tensor([[tableau.error_filter]])
        self.work = NewtonWork()
        self.jacobian: Jacobians | None = None  # J, shape (1, ...): at a step's start, kept across adaptive steps
        self.jacobian_at: Tensor | None = None  # the state it was taken at
        self.factors: dict[tuple, Factors | None] = {}  # group coefficients -> factors, for h and J
        self.factors_h: float | None = None
        self.stale = True  # take a new Jacobian at the next step
        self.eta = 1.0  # adaptive: the last converged iteration's rate / (1 - rate), to judge a first iterate
        self.slowest = 0.0  # adaptive: the largest contraction rate in the current step
        self.last: tuple[float, float, Tensor, Tensor] | None = None  # collocation: the last t, h, stages, y1

    def __call__(self, t: float, y0: Tensor, h: float, f0: Tensor | None) -> Step:
        f0 = self.rhs(t, y0) if f0 is None else f0
        if not self.adaptive or (self.stale and self.jacobian_at is not y0):
            self._new_jacobian(t, y0)
        while True:
            try:
                return self._step(t, y0, h, f0)
            except NewtonFailure as failure:
                if not self.adaptive:
                    raise SolverError(
                        f"Newton's method for the implicit stages of {self.tableau.name!r} failed in "
                        f"the step from t={t!r} of size {h!r}: {failure}; use a smaller step_size or "
                        "a larger max_iters"
                    ) from None
                if self.jacobian_at is y0:  # rejected: the controller shrinks the step
                    return Step(
                        t=t,
                        h=h,
                        y0=y0,
                        y1=y0,
                        k=StageList([f0]),
                        error_size=f0.new_tensor(math.inf),
                        failure=f"Newton's method for the implicit stages of {self.tableau.name!r} failed ({failure})",
                    )
                self._new_jacobian(t, y0)  # its Jacobian was older: once more with one taken here

    def _new_jacobian(self, t: float, y0: Tensor) -> None:
        """``J`` at ``(t, y0)``; ``f(t, y0)`` is evaluated anew where it is needed (differences), since the
        ``f0`` a step starts from may be the last step's final stage, exact only to the Newton tolerance."""
        self.jacobian = self.matrix.jacobians([(t, y0, None)])
        self.jacobian_at, self.stale = y0, False
        self.factors.clear()
        self.work.jacobians += 1

    def _step(self, t: float, y0: Tensor, h: float, f0: Tensor) -> Step:
        tableau, y0_flat, k = self.tableau, y0.reshape(-1), []
        self.slowest = 0.0
        for group in tableau.groups:
            base = torch.stack([self._known_part(y0_flat, h, k, i) for i in group])
            if tableau.explicit(group):
                i = group[0]
                k.append(f0.reshape(-1) if i == 0 else self._evaluate(t, h, group, base, y0)[0])
                continue
            factors = self._factors(group, h)
            with torch.no_grad():
                converged = self._newton(t, y0, h, group, base.detach(), factors, self._start(group, k, f0, t, y0, h))
            k.extend(self._attach_gradient(t, y0, h, group, base, converged).unbind(0))
        if self.adaptive:
            self.stale = self.slowest > SLOW_RATE
        stages = StageList([k_i.view_as(y0) for k_i in k])
        step = Step(t=t, h=h, y0=y0, y1=stages.combine(y0, h, tableau.b), k=stages)
        if tableau.error_filter is not None:  # an adaptive collocation method: its estimate, its next start
            stacked = torch.stack([k_i.detach() for k_i in k])
            step.error = self._filtered_error(t, y0, h, f0, stacked)
            self.last = (t, h, stacked, step.y1)
        return step

    def _filtered_error(self, t: float, y0: Tensor, h: float, f0: Tensor, stages: Tensor) -> Tensor:
        """Hairer's error estimate of a collocation method (``ImplicitTableau``), with one refinement from
        ``f(t, y0 + err0)`` on every step (SciPy's Radau refines only after a rejection): the stiff components
        of the raw estimate are damped by ``(I - h g J)⁻¹``."""
        tableau = self.tableau
        gamma = tableau.error_filter
        with torch.no_grad():
            known = h * (self.blocks[("error",)] @ stages)[0]
            factors = self._factorised(("error", gamma), self.blocks[("filter",)], h)
            try:
                error = self.matrix.solve(factors, (known + h * tableau.error_f0 * f0.detach().reshape(-1))[None])[0]
                refined = self.rhs(t, (y0.detach().reshape(-1) + error).view_as(y0)).reshape(-1)
                error = self.matrix.solve(factors, (known + h * tableau.error_f0 * refined)[None])[0]
            except ArithmeticError as failure:  # GMRES
                raise NewtonFailure(f"the error estimate's linear solve failed: {failure}") from None
        return error.view_as(y0)

    def _factors(self, group: tuple[int, ...], h: float) -> Factors:
        """The factors of the group's matrix for ``h`` and the current Jacobian, made once."""
        return self._factorised(self.coefficients[group], self.blocks[group], h)

    def _factorised(self, key: tuple, block: Tensor, h: float) -> Factors:
        """The factors of ``I - h block⊗J`` for ``h`` and the current Jacobian, made once per ``key``."""
        if h != self.factors_h:
            self.factors.clear()
            self.factors_h = h
        if key not in self.factors:
            self.factors[key] = self.matrix.factorise(block, self.jacobian, h)
            self.work.factorizations += 1
        if self.factors[key] is None:
            raise NewtonFailure(f"its matrix I - h A⊗J is singular at step size {h!r}")
        return self.factors[key]

    def _start(self, group: tuple[int, ...], k: list[Tensor], f0: Tensor, t: float, y0: Tensor, h: float) -> Tensor:
        """The first iterate of a group's stages: the predictor's combination of the stages before; for an
        adaptive collocation method the derivative of the last attempt's collocation polynomial, extended
        to this step's nodes (after an accepted step) or rescaled to them (a retry from the same point);
        otherwise ``f0``."""
        if self.tableau.predictor is not None and len(group) == 1:
            weights = self.tableau.predictor[group[0] - 1]
            return cast(Tensor, sum(w * k_j.detach() for w, k_j in zip(weights, k) if w != 0.0))  # weights sum to 1
        if self.last is not None:  # set by adaptive collocation methods only
            t_last, h_last, stages, y1_last = self.last
            shift = 1.0 if y0 is y1_last else 0.0 if t == t_last else None
            if shift is not None:
                nodes = [shift + c_i * h / h_last for c_i in self.tableau.c]
                return self._lagrange(nodes).to(stages.dtype) @ stages
        return f0.detach().reshape(-1)

    def _lagrange(self, points: list[float]) -> Tensor:
        """``L[i, j] = l_j(points[i])``, ``l_j`` the Lagrange basis polynomial of node ``c_j``."""
        return torch.tensor(
            [[float(basis(x)) for basis in self.tableau.lagrange_basis] for x in points], dtype=torch.float64
        )

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
        return torch.stack([self.rhs(t + c[i] * h, state.view_as(like)).reshape(-1) for i, state in zip(group, states)])

    def _newton(
        self,
        t: float,
        y0: Tensor,
        h: float,
        group: tuple[int, ...],
        base: Tensor,
        factors: Factors,
        start: Tensor,
    ) -> Tensor:
        """The converged stage derivatives of ``group``, ``(len(group), n)``, from ``K_i = start``."""
        block = self.blocks[group]
        y0_abs = y0.detach().reshape(-1).abs()
        scale = self.atol + (self.rtol + self.floor) * y0_abs
        stages = start.expand(len(group), -1).clone()
        previous = None
        for _ in range(self.max_iters):
            values = self._evaluate(t, h, group, base + h * (block @ stages), y0)
            try:
                update = self.matrix.solve(factors, values - stages)
            except ArithmeticError as error:  # GMRES
                raise NewtonFailure(f"its linear solve failed: {error}") from None
            stages = stages + update
            self.work.iterations += 1
            size = float(torch.linalg.vector_norm(h * update / (scale + self.floor * (h * stages).abs())))
            size /= math.sqrt(update.numel())
            if not math.isfinite(size):
                raise NewtonFailure("its iterates became non-finite")
            if not self.adaptive:
                if size <= 1.0:
                    return stages
                continue
            if previous is None:
                eta = max(self.eta, self.floor) ** 0.8
            else:
                rate = size / previous
                if rate >= 1.0:
                    raise NewtonFailure(f"it diverged, contraction rate {rate:.3g}")
                self.slowest = max(self.slowest, rate)
                eta = rate / (1.0 - rate)
            if eta * size <= KAPPA:
                self.eta = eta
                return stages
            previous = size
        raise NewtonFailure(f"it did not converge in {self.max_iters} iterations")

    def _attach_gradient(
        self, t: float, y0: Tensor, h: float, group: tuple[int, ...], base: Tensor, converged: Tensor
    ) -> Tensor:
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
        jacobians = self.matrix.jacobians(
            [(t + c[i] * h, state.detach().view_as(y0), None) for i, state in zip(group, states)]
        )
        self.work.jacobians += len(group)
        with torch.no_grad():
            factors = self.matrix.factorise(block, jacobians, h)
        self.work.factorizations += 1
        if factors is None:
            raise SolverError(
                f"the Newton matrix I - h A⊗J of {self.tableau.name!r} is singular at the converged "
                f"stages of the step from t={t!r} of size {h!r}; use a smaller step"
            )
        try:
            return converged + self.matrix.solve(factors, values - converged)
        except ArithmeticError as error:  # GMRES
            raise SolverError(
                f"the implicit function theorem's linear solve of {self.tableau.name!r} failed at the "
                f"step from t={t!r} of size {h!r} ({error}); use jacobian='dense' or a smaller "
                "step"
            ) from None
