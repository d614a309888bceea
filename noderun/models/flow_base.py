"""The base distribution of the flows: an isotropic Gaussian ``N(0, variance·I)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class GaussianBase:
    def __init__(self, dim: int, variance: float):
        if variance <= 0:
            raise ValueError(f"model.base_variance must be positive, got {variance}")
        self.dim, self.variance = dim, variance

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.pow(2).sum(dim=1) / self.variance + self.dim * math.log(2 * math.pi * self.variance))

    def sample(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(n, self.dim, generator=generator, dtype=like.dtype)
        return noise.to(like.device) * self.variance**0.5
