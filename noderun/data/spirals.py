"""Noisy 2-D spirals observed at irregular times (the paper's latent ODE experiment), generated in code.

Every trajectory lives on one shared grid: ``n_points`` equally spaced times over the observation
window followed by ``n_points`` more for extrapolation. A trajectory observes ``n_obs`` window
points chosen without replacement (its mask); the others, and every extrapolation point, are held
out for the predictive RMSE against the noise-free spiral.

Two generators (``dataset.kind``):

* ``logarithmic`` (the default): spirals ``r = r0 exp(rate t)`` about the origin, each from its own
  start point, half clockwise; the window is ``[0, t_window]`` and extrapolation runs to ``2 * t_window``.
* ``archimedean``: the authors' public generator (``generate_spiral2d`` in torchdiffeq's
  ``examples/latent_ode.py``). Two fixed curves over ``theta`` in ``[0, 6 pi]`` at 1,000 equally
  spaced values: counter-clockwise ``r = a + b theta`` centred at ``(+5, 0)``, and clockwise
  ``r = a + 50 b / (6 pi + 1 - theta)`` traversed with angle ``6 pi + 1 - theta`` and centred at
  ``(-5, 0)`` (``x = r cos(angle) + centre``, ``y = r sin(angle)``), ``a = 0``, ``b = 0.3``. Each
  trajectory takes one curve at random and a window of ``n_points`` consecutive points starting at
  an index drawn uniformly from ``[n_points, 1000 - 2 n_points)``, so ``n_points`` noise-free points
  always follow it; its clock is ``theta - theta_start`` (theta units, as the example's).
  (The example itself draws the start from ``[n_points, 1000 - n_points)``, so a window starting
  past 800 there has fewer than 100 points after it.)

``train_future=True`` gives each training trajectory its ``n_points`` points after the window too, noisy
and all observed, as ``future``: targets of the training likelihood (a forecasting objective; see
``training_targets``), never read by an encoder. Test trajectories carry none, and every other tensor is
the same as without it for the same seed.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from .splits import DataSplits

SPIRAL_KINDS = ("logarithmic", "archimedean")
DEFAULT_NOISE_STD = {"logarithmic": 0.1, "archimedean": 0.3}

# The public example's constants (torchdiffeq examples/latent_ode.py, __main__ and generate_spiral2d).
ARCHIMEDEAN_TOTAL = 1000  # theta values on [0, 6 pi]
ARCHIMEDEAN_STOP = 6 * math.pi
ARCHIMEDEAN_A, ARCHIMEDEAN_B = 0.0, 0.3
ARCHIMEDEAN_CENTRE = 5.0  # counter-clockwise at (+5, 0), clockwise at (-5, 0)


def spiral_truth(
    start_angle: torch.Tensor,
    start_radius: torch.Tensor,
    direction: torch.Tensor,
    times: torch.Tensor,
    angular_speed: float,
    radial_rate: float,
) -> torch.Tensor:
    """Logarithmic spirals ``r = r0 exp(rate t)``, ``theta = theta0 ± omega t``: shape ``(n, len(times), 2)``."""
    angle = start_angle[:, None] + direction[:, None] * angular_speed * times[None, :]
    radius = start_radius[:, None] * torch.exp(radial_rate * times[None, :])
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def archimedean_curves(
    n_total: int = ARCHIMEDEAN_TOTAL, stop: float = ARCHIMEDEAN_STOP, a: float = ARCHIMEDEAN_A, b: float = ARCHIMEDEAN_B
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The example's ``theta`` grid ``(n_total,)`` and its two noise-free curves ``(n_total, 2)``:
    counter-clockwise (angle ``theta``) and clockwise (angle ``stop + 1 - theta``), in float64."""
    theta = torch.linspace(0.0, stop, n_total, dtype=torch.float64)
    radius_ccw = a + b * theta
    ccw = torch.stack([radius_ccw * torch.cos(theta) + ARCHIMEDEAN_CENTRE, radius_ccw * torch.sin(theta)], dim=-1)
    angle_cw = stop + 1.0 - theta
    radius_cw = a + b * 50.0 / angle_cw
    cw = torch.stack([radius_cw * torch.cos(angle_cw) - ARCHIMEDEAN_CENTRE, radius_cw * torch.sin(angle_cw)], dim=-1)
    return theta, ccw, cw


class TrajectoryDataset(Dataset):
    """Per trajectory: noisy ``values`` on the window grid, observation ``mask``, clean ``truth`` on the whole grid,
    and, where given, noisy ``future`` values on the grid after the window."""

    def __init__(
        self,
        times: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        truth: torch.Tensor,
        future: torch.Tensor | None = None,
    ):
        self.times, self.values, self.mask, self.truth, self.future = times, values, mask, truth, future

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"times": self.times, "values": self.values[index], "mask": self.mask[index], "truth": self.truth[index]}
        if self.future is not None:
            item["future"] = self.future[index]
        return item


def training_targets(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The points a training likelihood scores, ``(B, T, obs)``, and which of them count, ``(B, T)``: the window's
    observed points, followed by every ``future`` point where the batch carries them."""
    values, mask = batch["values"], batch["mask"]
    if "future" not in batch:
        return values, mask
    future = batch["future"]
    return torch.cat([values, future], dim=1), torch.cat([mask, mask.new_ones(future.shape[:2])], dim=1)


class Spirals:
    """``n_spirals`` noisy spirals from the ``kind`` generator (see the module docstring).

    ``noise_std=None`` takes the kind's own level (0.1 logarithmic, 0.3 archimedean, the example's).
    ``t_window``, ``angular_speed`` and ``radial_rate`` shape the logarithmic spirals only. After
    ``load()``, ``clockwise`` (bool) and, for ``archimedean``, ``window_start`` (index into the
    1,000-point curve) describe every trajectory in generation order (test split first)."""

    def __init__(
        self,
        n_spirals: int = 1000,
        n_points: int = 100,
        n_obs: int = 30,
        t_window: float = 5.0,
        noise_std: float | None = None,
        angular_speed: float = 2.0,
        radial_rate: float = 0.02,
        test_fraction: float = 0.2,
        seed: int = 0,
        kind: str = "logarithmic",
        train_future: bool = False,
    ):
        if kind not in SPIRAL_KINDS:
            raise ValueError(f"dataset.kind={kind!r}: accepted values: {', '.join(SPIRAL_KINDS)}")
        if kind == "archimedean" and not 1 <= n_points < ARCHIMEDEAN_TOTAL / 3:
            raise ValueError(
                f"dataset.n_points={n_points} with dataset.kind=archimedean: accepted values: "
                f"1 to {math.ceil(ARCHIMEDEAN_TOTAL / 3) - 1} (window starts in [n_points, "
                f"{ARCHIMEDEAN_TOTAL} - 2 n_points))"
            )
        if not 1 <= n_obs <= n_points:
            raise ValueError(f"dataset.n_obs must be between 1 and n_points={n_points}, got {n_obs}")
        if n_spirals < 2 or not 0 < test_fraction < 1:
            raise ValueError("dataset.n_spirals must be at least 2 and dataset.test_fraction between 0 and 1")
        self.n_spirals, self.n_points, self.n_obs, self.t_window = n_spirals, n_points, n_obs, t_window
        self.noise_std = DEFAULT_NOISE_STD[kind] if noise_std is None else noise_std
        self.angular_speed, self.radial_rate = angular_speed, radial_rate
        self.test_fraction, self.seed, self.kind, self.train_future = test_fraction, seed, kind, train_future
        self.clockwise: torch.Tensor | None = None
        self.window_start: torch.Tensor | None = None

    def times(self) -> torch.Tensor:
        if self.kind == "archimedean":  # theta - theta_start: the example's step 6 pi / 999 from 0
            step = ARCHIMEDEAN_STOP / (ARCHIMEDEAN_TOTAL - 1)
        else:
            step = self.t_window / (self.n_points - 1)
        return torch.arange(2 * self.n_points, dtype=torch.float32) * step

    def _logarithmic(self, generator: torch.Generator, times: torch.Tensor) -> torch.Tensor:
        n = self.n_spirals
        direction = torch.ones(n)
        direction[n // 2 :] = -1.0
        direction = direction[torch.randperm(n, generator=generator)]
        start_angle = 2 * math.pi * torch.rand(n, generator=generator)
        start_radius = 0.5 + torch.rand(n, generator=generator)
        self.clockwise = direction < 0
        return spiral_truth(start_angle, start_radius, direction, times, self.angular_speed, self.radial_rate)

    def _archimedean(self, generator: torch.Generator) -> torch.Tensor:
        n, length = self.n_spirals, 2 * self.n_points
        _, ccw, cw = archimedean_curves()
        self.clockwise = torch.rand(n, generator=generator) < 0.5
        self.window_start = torch.randint(self.n_points, ARCHIMEDEAN_TOTAL - length, (n,), generator=generator)
        index = self.window_start[:, None] + torch.arange(length)
        curves = torch.where(self.clockwise[:, None, None], cw[index], ccw[index])
        return curves.to(torch.float32)

    def load(self) -> DataSplits:
        generator = torch.Generator().manual_seed(self.seed)
        n, times = self.n_spirals, self.times()
        truth = self._archimedean(generator) if self.kind == "archimedean" else self._logarithmic(generator, times)
        window = truth[:, : self.n_points]
        values = window + self.noise_std * torch.randn(window.shape, generator=generator)
        mask = torch.zeros(n, self.n_points, dtype=torch.bool)
        for i in range(n):
            mask[i, torch.randperm(self.n_points, generator=generator)[: self.n_obs]] = True
        values = values * mask[..., None]  # unobserved values are never seen
        n_test = round(n * self.test_fraction)
        test, train = slice(0, n_test), slice(n_test, n)
        future = None
        if self.train_future:  # drawn last, so that everything above is the same with or without it
            after = truth[train, self.n_points :]
            future = after + self.noise_std * torch.randn(after.shape, generator=generator)
        return DataSplits(
            train=TrajectoryDataset(times, values[train], mask[train], truth[train], future),
            test=TrajectoryDataset(times, values[test], mask[test], truth[test]),
            info={"obs_dim": 2},
        )
