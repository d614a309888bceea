"""Noisy 2-D spirals observed at irregular times (the paper's latent ODE experiment), generated in code.

Every trajectory lives on one shared grid: ``n_points`` equally spaced times over the observation
window ``[0, t_window]`` followed by ``n_points`` more out to ``2 * t_window`` for extrapolation.
A trajectory observes ``n_obs`` window points chosen without replacement (its mask); the others,
and every extrapolation point, are held out for the predictive RMSE against the noise-free spiral.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from .splits import DataSplits


def spiral_truth(start_angle: torch.Tensor, start_radius: torch.Tensor, direction: torch.Tensor,
                 times: torch.Tensor, angular_speed: float, radial_rate: float) -> torch.Tensor:
    """Logarithmic spirals ``r = r0 exp(rate t)``, ``theta = theta0 ± omega t``: shape ``(n, len(times), 2)``."""
    angle = start_angle[:, None] + direction[:, None] * angular_speed * times[None, :]
    radius = start_radius[:, None] * torch.exp(radial_rate * times[None, :])
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


class TrajectoryDataset(Dataset):
    """Per trajectory: noisy ``values`` on the window grid, observation ``mask``, clean ``truth`` on the whole grid."""

    def __init__(self, times: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, truth: torch.Tensor):
        self.times, self.values, self.mask, self.truth = times, values, mask, truth

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"times": self.times, "values": self.values[index], "mask": self.mask[index],
                "truth": self.truth[index]}


class Spirals:
    """1000 spirals, half clockwise and half counter-clockwise, each from its own start point."""

    def __init__(self, n_spirals: int = 1000, n_points: int = 100, n_obs: int = 30, t_window: float = 5.0,
                 noise_std: float = 0.1, angular_speed: float = 2.0, radial_rate: float = 0.02,
                 test_fraction: float = 0.2, seed: int = 0):
        if not 1 <= n_obs <= n_points:
            raise ValueError(f"dataset.n_obs must be between 1 and n_points={n_points}, got {n_obs}")
        if n_spirals < 2 or not 0 < test_fraction < 1:
            raise ValueError("dataset.n_spirals must be at least 2 and dataset.test_fraction between 0 and 1")
        self.n_spirals, self.n_points, self.n_obs, self.t_window = n_spirals, n_points, n_obs, t_window
        self.noise_std, self.angular_speed, self.radial_rate = noise_std, angular_speed, radial_rate
        self.test_fraction, self.seed = test_fraction, seed

    def times(self) -> torch.Tensor:
        step = self.t_window / (self.n_points - 1)
        return torch.arange(2 * self.n_points, dtype=torch.float32) * step

    def load(self) -> DataSplits:
        generator = torch.Generator().manual_seed(self.seed)
        n, times = self.n_spirals, self.times()
        direction = torch.ones(n)
        direction[n // 2:] = -1.0
        direction = direction[torch.randperm(n, generator=generator)]
        start_angle = 2 * math.pi * torch.rand(n, generator=generator)
        start_radius = 0.5 + torch.rand(n, generator=generator)
        truth = spiral_truth(start_angle, start_radius, direction, times, self.angular_speed, self.radial_rate)
        window = truth[:, : self.n_points]
        values = window + self.noise_std * torch.randn(window.shape, generator=generator)
        mask = torch.zeros(n, self.n_points, dtype=torch.bool)
        for i in range(n):
            mask[i, torch.randperm(self.n_points, generator=generator)[: self.n_obs]] = True
        values = values * mask[..., None]  # unobserved values are never seen
        n_test = round(n * self.test_fraction)
        split = {"test": slice(0, n_test), "train": slice(n_test, n)}
        parts = {name: TrajectoryDataset(times, values[s], mask[s], truth[s]) for name, s in split.items()}
        return DataSplits(train=parts["train"], test=parts["test"], info={"obs_dim": 2})
