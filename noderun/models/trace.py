"""The trace of ``∂f/∂z`` that a continuous normalizing flow integrates: exact (one vector–Jacobian
product per dimension) or Hutchinson's unbiased estimate ``εᵀ(∂f/∂z)ε`` (one product in any dimension)."""

from __future__ import annotations

import torch
from torch import Tensor

NOISES = ("gaussian", "rademacher")


def exact_trace(f: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """``tr(∂f/∂z)`` per row of ``f`` and ``z`` (both ``(B, D)``; ``f`` computed from ``z``)."""
    trace = torch.zeros_like(f[:, 0])
    for i in range(z.shape[1]):
        trace = trace + torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0][:, i]
    return trace


def hutchinson_trace(f: Tensor, z: Tensor, noise: Tensor, create_graph: bool) -> Tensor:
    """``εᵀ(∂f/∂z)ε`` per row, ``noise`` = ε of shape ``(B, D)``: an unbiased estimate of the trace."""
    noise_jacobian = torch.autograd.grad(f, z, noise, create_graph=create_graph)[0]
    return (noise_jacobian * noise).sum(dim=1)


def draw_noise(like: Tensor, kind: str) -> Tensor:
    """ε with zero mean and identity covariance: standard Gaussian or Rademacher (±1)."""
    if kind == "gaussian":
        return torch.randn_like(like)
    if kind == "rademacher":
        return torch.randint_like(like, 0, 2) * 2 - 1
    raise ValueError(f"unknown Hutchinson noise {kind!r}; valid: {', '.join(NOISES)}")
