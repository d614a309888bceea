"""The discrete planar normalizing flow (Rezende & Mohamed 2015): K layers ``z + û tanh(wᵀz + b)``,
each with ``log|det| = log|1 + ûᵀw tanh'(wᵀz + b)|``, ``û`` constrained so that every layer is invertible.

A planar layer is cheap one way only. ``direction="normalizing"`` runs the layers data → base, as
maximum likelihood needs; ``"generative"`` runs them base → data, as density matching needs. The
other direction inverts each layer numerically (bisection): fine for figures, not differentiable.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flow_base import GaussianBase

DIRECTIONS = ("normalizing", "generative")
SOFTPLUS_SHIFT = math.log(math.e - 1)  # softplus(SOFTPLUS_SHIFT) = 1


class PlanarLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(0.1 * torch.randn(dim))
        self.u = nn.Parameter(0.1 * torch.randn(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """``u`` moved along ``w`` so that ``wᵀû = softplus(wᵀu + log(e - 1)) - 1 > -1``: the layer is
        invertible. The shift makes ``wᵀu = 0`` map to ``wᵀû = 0``, so a small random layer starts near
        the identity instead of contracting every sample (Rezende & Mohamed's unshifted map gives -0.31)."""
        wu = self.w @ self.u
        return self.u + (F.softplus(wu + SOFTPLUS_SHIFT) - 1 - wu) * self.w / (self.w @ self.w)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = self.u_hat()
        h = torch.tanh(z @ self.w + self.b)
        log_det = torch.log((1 + (1 - h**2) * (self.w @ u)).abs())
        return z + h[:, None] * u, log_det

    @torch.no_grad()
    def inverse(self, y: Tensor, iterations: int = 60) -> Tensor:
        """``z`` with ``forward(z)[0] = y``: bisection on ``a + wᵀû tanh(a + b) = wᵀy`` for ``a = wᵀz``."""
        u = self.u_hat()
        wu, target = self.w @ u, y @ self.w
        low, high = target - wu.abs() - 1, target + wu.abs() + 1
        for _ in range(iterations):
            middle = (low + high) / 2
            above = middle + wu * torch.tanh(middle + self.b) > target
            low, high = torch.where(above, low, middle), torch.where(above, middle, high)
        return y - torch.tanh((low + high) / 2 + self.b)[:, None] * u


class PlanarNF(nn.Module):
    def __init__(self, dim: int, layers: int = 64, direction: str = "normalizing", base_variance: float = 0.1):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown model.direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
        if layers < 1:
            raise ValueError(f"model.layers must be a positive integer, got {layers}")
        self.direction = direction
        self.layers = nn.ModuleList(PlanarLayer(dim) for _ in range(layers))
        self.base = GaussianBase(dim, base_variance)

    def _through_layers(self, z: Tensor, count: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``count`` layers (all by default) and the sum of their log-determinants."""
        total = z.new_zeros(len(z))
        for layer in list(self.layers)[:count]:
            z, log_det = layer(z)
            total = total + log_det
        return z, total

    def _inverse_layers(self, y: Tensor, count: int | None = None) -> Tensor:
        """The last ``count`` layers (all by default) inverted, last first."""
        for layer in list(self.layers)[::-1][:count]:
            y = cast(PlanarLayer, layer).inverse(y)
        return y

    def _refuse_gradients(self, what: str) -> None:
        if torch.is_grad_enabled():
            wanted = "normalizing" if what == "log_prob" else "generative"
            raise ValueError(
                f"planar_nf with model.direction={self.direction} cannot train through {what} "
                f"(it needs a numerical inverse); use model.direction={wanted}"
            )

    def log_prob(self, x: Tensor) -> Tensor:
        if self.direction == "normalizing":
            z, log_det = self._through_layers(x)
            return self.base.log_prob(z) + log_det
        self._refuse_gradients("log_prob")
        z0 = self._inverse_layers(x)
        _, log_det = self._through_layers(z0)
        return self.base.log_prob(z0) - log_det

    def sample_with_log_prob(self, n: int, like: Tensor, generator: torch.Generator | None = None):
        z0 = self.base.sample(n, like, generator)
        if self.direction == "generative":
            x, log_det = self._through_layers(z0)
            return x, self.base.log_prob(z0) - log_det
        self._refuse_gradients("sample_with_log_prob")
        x = self._inverse_layers(z0)
        return x, self.log_prob(x)

    @torch.no_grad()
    def transport(self, z0: Tensor, fractions: list[float]) -> list[Tensor]:
        """Base samples after each fraction of the layers (counted from the base side)."""
        counts = [round(fraction * len(self.layers)) for fraction in fractions]
        if self.direction == "normalizing":
            return [self._inverse_layers(z0, count) for count in counts]
        return [self._through_layers(z0, count)[0] for count in counts]
