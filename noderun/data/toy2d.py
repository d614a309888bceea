"""Two-dimensional toy densities for normalizing flows, generated in code from a seed.

Every shape is a noise-free point set (``clean``) blurred by isotropic Gaussian noise of standard
deviation ``noise``, so its density is the convolution ``p(x) = E_c[N(x; c, noise² I)]``. The
``log_density`` handed to tasks is that expectation over a fixed reference sample of clean points:
a normalised density (it integrates to 1), exact up to Monte-Carlo error in the reference sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .splits import DataSplits

CleanSampler = Callable[[int, torch.Generator], Tensor]


def _uniform(n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator)


def circles(n: int, generator: torch.Generator) -> Tensor:
    """Two concentric circles of radius 1 and 0.5 (scikit-learn's ``make_circles``, factor 0.5)."""
    angle = 2 * math.pi * _uniform(n, generator)
    radius = torch.where(_uniform(n, generator) < 0.5, 1.0, 0.5)
    return radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)


def moons(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaved half circles (scikit-learn's ``make_moons``), centred at the origin."""
    angle = math.pi * _uniform(n, generator)
    upper = torch.stack([angle.cos(), angle.sin()], dim=1)
    lower = torch.stack([1 - angle.cos(), 0.5 - angle.sin()], dim=1)
    points = torch.where((_uniform(n, generator) < 0.5)[:, None], upper, lower)
    return points - torch.tensor([0.5, 0.25])


def gaussians(n: int, generator: torch.Generator) -> Tensor:
    """Eight points on the unit circle (the noise makes them Gaussians)."""
    angle = 2 * math.pi * torch.randint(0, 8, (n,), generator=generator) / 8
    return torch.stack([angle.cos(), angle.sin()], dim=1)


def checkerboard(n: int, generator: torch.Generator) -> Tensor:
    """Uniform on the black squares of a 4×4 board over [-1, 1]²."""
    x = 2 * _uniform(n, generator) - 1
    column = torch.floor((x + 1) * 2)  # 0..3
    row = 2 * torch.randint(0, 2, (n,), generator=generator) + (column + 1) % 2  # the other parity
    y = -1 + (row + _uniform(n, generator)) / 2
    return torch.stack([x, y], dim=1)


def pinwheel(n: int, generator: torch.Generator) -> Tensor:
    """Five arms whose angle grows with the radius."""
    radius = 0.15 + 0.85 * _uniform(n, generator)
    arm = torch.randint(0, 5, (n,), generator=generator)
    angle = 2 * math.pi * arm / 5 + 1.5 * radius
    return radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)


def spirals(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaved Archimedean spirals of one and a half turns."""
    angle = 3 * math.pi * _uniform(n, generator).sqrt()
    radius = angle / (3 * math.pi)
    points = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return torch.where((_uniform(n, generator) < 0.5)[:, None], points, -points)


SHAPES: dict[str, tuple[CleanSampler, float]] = {  # name → (clean sampler, default noise)
    "circles": (circles, 0.06),
    "moons": (moons, 0.08),
    "gaussians": (gaussians, 0.1),
    "checkerboard": (checkerboard, 0.03),
    "pinwheel": (pinwheel, 0.05),
    "spirals": (spirals, 0.04),
}


class MixtureDensity:
    """``log p(x)`` of clean reference points blurred by ``N(0, noise² I)``: ``(N, 2) → (N,)``."""

    def __init__(self, centres: Tensor, noise: float):
        self.centres, self.noise = centres, noise

    def __call__(self, x: Tensor) -> Tensor:
        centres = self.centres.to(device=x.device, dtype=x.dtype)
        squared = torch.cdist(x, centres).pow(2)
        log_kernels = -0.5 * squared / self.noise**2 - math.log(2 * math.pi * self.noise**2)
        return torch.logsumexp(log_kernels, dim=1) - math.log(len(centres))


class Toy2D:
    """``n_train`` and ``n_test`` samples of shape ``name``; ``info`` carries ``dim`` and ``log_density``."""

    def __init__(
        self,
        name: str = "moons",
        n_train: int = 10240,
        n_test: int = 5000,
        noise: float | None = None,
        n_reference: int = 4096,
        seed: int = 0,
    ):
        if name not in SHAPES:
            raise ValueError(f"unknown dataset.name {name!r}; valid: {', '.join(SHAPES)}")
        if n_train < 1 or n_test < 1 or n_reference < 1:
            raise ValueError("dataset.n_train, dataset.n_test and dataset.n_reference must be positive")
        if noise is not None and noise <= 0:
            raise ValueError(f"dataset.noise must be positive (or null for the shape's default), got {noise}")
        self.name, self.n_train, self.n_test, self.n_reference, self.seed = name, n_train, n_test, n_reference, seed
        self.noise = SHAPES[name][1] if noise is None else noise

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        clean = SHAPES[self.name][0](n, generator)
        return clean + self.noise * torch.randn(clean.shape, generator=generator)

    def log_density(self) -> MixtureDensity:
        generator = torch.Generator().manual_seed(self.seed + 1)
        return MixtureDensity(SHAPES[self.name][0](self.n_reference, generator), self.noise)

    def load(self) -> DataSplits:
        generator = torch.Generator().manual_seed(self.seed)
        train, test = self.sample(self.n_train, generator), self.sample(self.n_test, generator)
        return DataSplits(
            train=TensorDataset(train), test=TensorDataset(test), info={"dim": 2, "log_density": self.log_density()}
        )
