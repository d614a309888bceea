"""``options["jacobian"] = "matrix_free"``: Newton–Krylov for the implicit methods' stage equations, for states
too large for a dense Jacobian. ``J v`` is a forward difference of ``f`` along ``v`` (one evaluation, any
``func``), ``M = I - h (A_g ⊗ J)`` is never formed, and ``M x = r`` is solved by restarted GMRES in the
variables of the error control (``x / (atol + rtol |y|)``, so that components of very different sizes count
alike). With a graph (backprop's implicit-function-theorem update), the solve's derivative applies ``M^T``
by vector–Jacobian products of ``f`` at the stage states, again by GMRES."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import SolverError
from .step import RHS

KRYLOV_DIMENSION = 40  # basis vectors before a restart
RESTARTS = 5
TOLERANCE_UNITS = 10  # GMRES stops at this many times sqrt(eps) of the residual: J v by differences is no finer


@dataclass
class Point:
    """Where ``J`` is taken: ``(t, y)`` and ``f(t, y)``, detached."""

    t: float
    y: Tensor
    f: Tensor


@dataclass
class KrylovOperator:
    """``M = I - h [block_ij J_i]`` on a group's stacked stages ``(m, n)``, ``J_i`` at ``points[i]`` (one point:
    shared by every stage)."""

    rhs: RHS
    block: Tensor
    points: list[Point]
    h: float
    scale: Tensor  # (m * n,): the error control's scale of each stage element

    def point(self, i: int) -> Point:
        return self.points[i] if len(self.points) > 1 else self.points[0]

    def jvp(self, i: int, v: Tensor) -> Tensor:
        """``J_i v`` by a forward difference of ``f``, the step scaled to the state and to ``v``."""
        point = self.point(i)
        size = float(torch.linalg.vector_norm(v)) / math.sqrt(v.numel())
        if size == 0.0:
            return torch.zeros_like(v)
        scale = float(torch.linalg.vector_norm(point.y)) / math.sqrt(v.numel())
        delta = math.sqrt(torch.finfo(v.dtype).eps) * max(1.0, scale) / size
        shifted = self.rhs(point.t, (point.y.reshape(-1) + delta * v).view_as(point.y)).reshape(-1)
        return (shifted - point.f.reshape(-1)) / delta

    def vjp(self, i: int, u: Tensor) -> Tensor:
        """``J_i^T u`` by autograd through one evaluation of ``f``."""
        point = self.point(i)
        with torch.enable_grad():
            y = point.y.detach().requires_grad_(True)
            value = self.rhs(point.t, y).reshape(-1)
            return torch.autograd.grad(value, y, u)[0].reshape(-1)

    def matvec(self, x: Tensor) -> Tensor:
        """``(M x)_i = x_i - h J_i sum_j block_ij x_j``."""
        stages = x.view(len(self.block), -1)
        mixed = self.block @ stages
        return (stages - self.h * torch.stack([self.jvp(i, mixed[i]) for i in range(len(self.block))])).reshape(-1)

    def rmatvec(self, x: Tensor) -> Tensor:
        """``(M^T u)_j = u_j - h sum_i block_ij J_i^T u_i``."""
        stages = x.view(len(self.block), -1)
        coupled = torch.stack([self.vjp(i, stages[i]) for i in range(len(self.block))])
        return (stages - self.h * (self.block.t() @ coupled)).reshape(-1)


def gmres(matvec, b: Tensor) -> Tensor | None:
    """``x`` with ``|matvec(x) - b| <= 10 sqrt(eps) |b|`` (``eps`` of ``b``'s dtype) by restarted GMRES (modified
    Gram–Schmidt), or ``None`` when it does not get there."""
    x = torch.zeros_like(b)
    target = TOLERANCE_UNITS * math.sqrt(torch.finfo(b.dtype).eps) * float(torch.linalg.vector_norm(b))
    if target == 0.0:
        return x
    for _ in range(RESTARTS):
        residual = b - matvec(x) if x.any() else b
        beta = float(torch.linalg.vector_norm(residual))
        if beta <= target:
            return x
        basis = [residual / beta]
        hessenberg = b.new_zeros(KRYLOV_DIMENSION + 1, KRYLOV_DIMENSION)
        for j in range(min(KRYLOV_DIMENSION, b.numel())):
            w = matvec(basis[j])
            for i, v in enumerate(basis):
                hessenberg[i, j] = torch.dot(w, v)
                w = w - hessenberg[i, j] * v
            hessenberg[j + 1, j] = torch.linalg.vector_norm(w)
            rhs = b.new_zeros(j + 2)
            rhs[0] = beta
            coefficients = torch.linalg.lstsq(hessenberg[: j + 2, : j + 1], rhs[:, None]).solution[:, 0]
            left = float(torch.linalg.vector_norm(hessenberg[: j + 2, : j + 1] @ coefficients - rhs))
            if left <= target or float(hessenberg[j + 1, j]) <= 1e-14 * beta:
                break
            basis.append(w / hessenberg[j + 1, j])
        x = x + torch.stack(basis[: len(coefficients)], dim=1) @ coefficients
    return x if float(torch.linalg.vector_norm(b - matvec(x))) <= 10 * target else None


class KrylovSolve(torch.autograd.Function):
    """``M⁻¹ r``, differentiable in ``r`` (its gradient ``M^-T g``); both solved as ``D⁻¹ M D`` and
    ``D M^T D⁻¹`` with ``D`` the error control's scale."""

    @staticmethod
    def forward(ctx, operator: KrylovOperator, residual: Tensor) -> Tensor:
        ctx.operator = operator
        d = operator.scale
        with torch.no_grad():
            solution = gmres(lambda v: operator.matvec(v * d) / d, residual.reshape(-1) / d)
        if solution is None:
            raise ArithmeticError("GMRES did not converge")
        return (solution * d).view_as(residual)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        operator = ctx.operator
        d = operator.scale
        solution = gmres(lambda v: operator.rmatvec(v / d) * d, grad.reshape(-1) * d)
        if solution is None:
            raise SolverError(
                "GMRES did not converge on the transposed system of the implicit function theorem's "
                "update (options['jacobian']='matrix_free'); use jacobian='dense' or tighter tolerances"
            )
        return None, (solution / d).view_as(grad)


class MatrixFreeNewton:
    """The ``NewtonMatrix`` interface without matrices: ``jacobians`` keeps points, ``factorise`` makes the
    operator, ``solve`` runs GMRES (``None`` / ``ArithmeticError`` when it fails)."""

    per_sample = False

    def __init__(self, rhs: RHS, rtol: float, atol: float):
        self.rhs, self.rtol, self.atol = rhs, rtol, atol

    def jacobians(self, points: list[tuple[float, Tensor, Tensor | None]]) -> list[Point]:
        with torch.no_grad():
            return [Point(t, y.detach(), (self.rhs(t, y) if f is None else f).detach()) for t, y, f in points]

    def factorise(self, block: Tensor, jacobians: list[Point], h: float) -> KrylovOperator:
        scale = self.atol + self.rtol * jacobians[0].y.reshape(-1).abs()
        return KrylovOperator(self.rhs, block, jacobians, h, scale.repeat(len(block)))

    def solve(self, operator: KrylovOperator, residual: Tensor) -> Tensor:
        return KrylovSolve.apply(operator, residual)
