"""The Jacobian of the right-hand side with respect to the state: one dense matrix over the flattened state
(``Jacobian``), or one block per sample for a batch of independent samples (``BlockJacobian``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .step import RHS


class Jacobian:
    """``J = df/dy`` of ``rhs`` at ``(t, y)``: an ``(n, n)`` tensor for a state of ``n`` elements, row ``i``
    the derivative of ``f``'s element ``i`` (both flattened), never recording a graph.

    It is taken by reverse mode with ``torch.func.jacrev``: one vectorised evaluation of ``rhs``. A
    function that ``torch.func`` cannot transform — one that calls autograd itself, as the adjoint's
    backward dynamics do, or reads a value out of the state — makes the first attempt fail; from then
    on, for this solve, the Jacobian is taken by forward differences, one evaluation of ``rhs`` per
    state element, each with the step ``sqrt(eps) * max(|y_j|, 1)``.
    """

    def __init__(self, rhs: RHS):
        self.rhs = rhs
        self.transformable = True

    def __call__(self, t: float, y: Tensor, f: Tensor | None = None) -> Tensor:
        """``df/dy`` at ``(t, y)``; ``f``, when given, is ``rhs(t, y)`` (used by forward differences)."""
        with torch.no_grad():
            if self.transformable:
                try:
                    return self._reverse_mode(t, y)
                except RuntimeError:
                    self.transformable = False
            return self._differences(t, y, f)

    def _reverse_mode(self, t: float, y: Tensor) -> Tensor:
        def flat_rhs(y_flat: Tensor) -> Tensor:
            return self.rhs(t, y_flat.view_as(y)).reshape(-1)

        return torch.func.jacrev(flat_rhs)(y.detach().reshape(-1))

    def _differences(self, t: float, y: Tensor, f: Tensor | None) -> Tensor:
        y_flat = y.detach().reshape(-1)
        f_flat = (self.rhs(t, y) if f is None else f).detach().reshape(-1)
        root_eps = math.sqrt(torch.finfo(y.dtype).eps)
        columns = []
        for j in range(len(y_flat)):
            shifted = y_flat.clone()
            shifted[j] += root_eps * max(abs(float(y_flat[j])), 1.0)
            delta = shifted[j] - y_flat[j]  # the step as the dtype represents it
            columns.append((self.rhs(t, shifted.view_as(y)).reshape(-1) - f_flat) / delta)
        return torch.stack(columns, dim=1)


class BlockJacobian(Jacobian):
    """The per-sample blocks of ``df/dy`` for a state whose samples (dim 0) evolve independently: a
    ``(batch, d, d)`` tensor, block ``b`` the derivative of sample ``b``'s ``d`` elements (flattened) with
    respect to its own. Coupling between samples, if ``f`` has any, is ignored.

    Reverse mode differentiates the sum over the batch, ``sum_b f_b``, which by independence holds every
    block: ``d`` vectorised backward passes whatever the batch size. The fallback (a function
    ``torch.func`` cannot transform) is ``d`` forward differences, each shifting element ``j`` of every
    sample at once.
    """

    def _reverse_mode(self, t: float, y: Tensor) -> Tensor:
        batch = len(y)

        def summed(y_flat: Tensor) -> Tensor:
            return self.rhs(t, y_flat.view_as(y)).reshape(batch, -1).sum(0)

        blocks = torch.func.jacrev(summed)(y.detach().reshape(batch, -1))  # (d, batch, d)
        return blocks.permute(1, 0, 2)

    def _differences(self, t: float, y: Tensor, f: Tensor | None) -> Tensor:
        batch = len(y)
        y_rows = y.detach().reshape(batch, -1)
        f_rows = (self.rhs(t, y) if f is None else f).detach().reshape(batch, -1)
        root_eps = math.sqrt(torch.finfo(y.dtype).eps)
        columns = []
        for j in range(y_rows.shape[1]):
            shifted = y_rows.clone()
            shifted[:, j] += root_eps * y_rows[:, j].abs().clamp_min(1.0)
            delta = shifted[:, j] - y_rows[:, j]
            columns.append((self.rhs(t, shifted.view_as(y)).reshape(batch, -1) - f_rows) / delta[:, None])
        return torch.stack(columns, dim=2)
