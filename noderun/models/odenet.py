"""The paper's MNIST ODE-Net (Chen et al. 2018, section 3; the authors' public example)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .ode_block import ODEBlock, SolverSettings


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups (the paper's), or one per channel below 32; a count that 32 does not divide (an augmented
    66) takes the largest group count dividing both."""
    groups = min(32, channels)
    return nn.GroupNorm(groups if channels % groups == 0 else math.gcd(32, channels), channels)


class ConcatConv2d(nn.Module):
    """A 3×3 convolution that sees time as an extra input channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, kernel_size=3, padding=1)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        time_channel = t.expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([time_channel, x], dim=1))


class ConvODEFunc(nn.Module):
    """``f(t, h)``: norm, ReLU, time-concatenated conv, norm, ReLU, time-concatenated conv, norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = group_norm(channels), group_norm(channels), group_norm(channels)
        self.conv1, self.conv2 = ConcatConv2d(channels), ConcatConv2d(channels)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        h = self.conv1(t, torch.relu(self.norm1(h)))
        h = self.conv2(t, torch.relu(self.norm2(h)))
        return self.norm3(h)


def downsampling(in_channels: int, channels: int) -> nn.Sequential:
    """28×28 → 6×6: conv 3×3, then two strided 4×4 convs, with norm and ReLU between."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, 1),
        group_norm(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 4, 2, 1),
        group_norm(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 4, 2, 1),
    )


def classifier_head(channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        group_norm(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
    )


def augmented(h: Tensor, extra: int) -> Tensor:
    """``h`` with ``extra`` zero channels after its own (dimension 1): ANODE's augmented state (Dupont et al. 2019)."""
    if not extra:
        return h
    return torch.cat([h, h.new_zeros(h.shape[0], extra, *h.shape[2:])], dim=1)


class ODENet(nn.Module):
    """Downsampling, one ODE block over ``[0, integration_time]``, classifier head. With ``augment_dim``,
    the block flows ``channels + augment_dim`` channels, the extra ones starting at zero, and the head
    reads them all (ANODE)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        solver: SolverSettings,
        channels: int = 64,
        integration_time: float = 1.0,
        augment_dim: int = 0,
    ):
        super().__init__()
        self.augment_dim = augment_dim
        self.downsampling = downsampling(input_shape[0], channels)
        self.feature = ODEBlock(ConvODEFunc(channels + augment_dim), solver, integration_time)
        self.head = classifier_head(channels + augment_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.feature(augmented(self.downsampling(x), self.augment_dim)))
