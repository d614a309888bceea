"""Step-size control: error norms, the initial step, the step-size controller and fixed grids."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Norm = Callable[[Tensor], Tensor]


def rms_norm(x: Tensor) -> Tensor:
    """Root mean square over all elements."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def channel_norm(sizes: tuple[int, ...]) -> Norm:
    """Maximum of the RMS norms of consecutive channels of a flat vector of ``sizes`` elements.

    Elements past ``sum(sizes)`` are ignored: that is how the adjoint's seminorm leaves the
    parameter-gradient channels out of the error control.
    """
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)

    def norm(x: Tensor) -> Tensor:
        parts = [rms_norm(x[lo:hi]) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
        return torch.stack(parts).max()

    return norm


def all_finite(x: Tensor) -> bool:
    """Whether every element of ``x`` is finite: one reduction (``amax`` propagates NaN) and one read."""
    return math.isfinite(float(x.detach().abs().amax()))


class ErrorRatio:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))`` as a float — a step is accepted when it is
    at most 1 — or ``inf`` when it or ``y1`` is not finite, read from the device once.

    ``like`` gives the states' size, dtype and device. The tolerances are kept as tensors (an
    operation with a Python number costs several microseconds more on a small state), and for the
    RMS norm its ``1 / sqrt(numel)`` goes into them, leaving a plain 2-norm. ``|y1|`` is kept for the
    next step, whose ``y0`` it usually is.
    """

    def __init__(self, rtol: float, atol: float, norm: Norm, like: Tensor):
        root = math.sqrt(like.numel()) if norm is rms_norm else 1.0
        # torch.tensor, not scalar_tensor: a tolerance beyond the dtype's range becomes inf, not an error
        self.rtol = torch.tensor(rtol * root, dtype=like.dtype, device=like.device)
        self.atol = torch.tensor(atol * root, dtype=like.dtype, device=like.device)
        self.norm = torch.linalg.vector_norm if norm is rms_norm else norm
        self.magnitude: tuple[Tensor | None, Tensor | None] = (None, None)  # (y, |y|) of the last state seen

    def abs(self, y: Tensor) -> Tensor:
        """``|y|``, computed at most once for the same state."""
        if self.magnitude[0] is not y:
            self.keep(y, y.abs())
        return self.magnitude[1]

    def keep(self, y: Tensor, y_abs: Tensor) -> None:
        """Remember ``|y|`` (a new state's, usually the next step's ``y0``)."""
        self.magnitude = (y, y_abs)

    def scale(self, y0: Tensor) -> Tensor:
        """``atol + rtol * |y0|`` (with the RMS norm's root folded in)."""
        return torch.addcmul(self.atol, self.abs(y0), self.rtol)

    def __call__(self, error: Tensor, y0: Tensor, y1: Tensor) -> float:
        y1_abs = y1.abs()
        size = error_size(self.norm, error, self.abs(y0), y1_abs, y1, self.atol, self.rtol)
        self.keep(y1, y1_abs)
        return self.read(size)

    @staticmethod
    def read(size: Tensor) -> float:
        """The ratio as a float, ``inf`` when it is not finite."""
        ratio = float(size.detach())
        return ratio if math.isfinite(ratio) else math.inf


def error_size(norm: Norm, error: Tensor, y0_abs: Tensor, y1_abs: Tensor, y1: Tensor, atol: Tensor,
               rtol: Tensor) -> Tensor:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))`` as a tensor, NaN when ``y1`` is not finite."""
    scale = torch.addcmul(atol, torch.maximum(y0_abs, y1_abs), rtol)
    # |y1| - |y1| is 0, or NaN where y1 is not finite (a scale of inf would hide it)
    size = torch.as_tensor(norm(torch.addcdiv(y1_abs - y1_abs, error, scale)))
    if norm is not torch.linalg.vector_norm:  # it may leave elements out (the seminorm)
        size = torch.add(size, y1.sum(), alpha=0)
    return size


def initial_step(rhs, t0: float, y0: Tensor, f0: Tensor, error_order: int, error_ratio: ErrorRatio,
                 span: float) -> float:
    """Hairer's starting step (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4), signed like ``span``.

    Costs one evaluation of ``rhs``; ``span`` is the signed length of the whole integration; the norm
    and tolerances are those of ``error_ratio``.
    """
    scale, norm = error_ratio.scale(y0), error_ratio.norm
    d0 = float(norm(y0 / scale))
    d1 = float(norm(f0 / scale))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, abs(span))
    direction = math.copysign(1.0, span)
    f1 = rhs(t0 + direction * h0, torch.add(y0, f0, alpha=direction * h0))
    d2 = float(norm(torch.sub(f1, f0).div_(scale))) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return direction * min(100 * h0, h1, abs(span))


MIN_PREVIOUS_RATIO = 1e-4  # as Hairer's FACOLD: a near-zero error must not shrink the next step


@dataclass
class PIController:
    """Step-size control as in Hairer's DOPRI5 code: integral (``beta = 0``, the default, as in SciPy's
    RK45 and torchdiffeq) or proportional–integral (``beta > 0``; Hairer's default is 0.04).

    ``h_new = h * safety * ratio**(-(1/k - 0.75 * beta)) * previous_ratio**beta`` with
    ``k = error_order + 1`` and ``previous_ratio`` the last accepted step's; the factor is clipped to
    ``[dfactor, ifactor]``. A rejected step shrinks by ``safety * ratio**(-1/k)`` (at least ``dfactor``).
    """

    error_order: int
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0
    previous_ratio: float = 1.0

    def next_step(self, h: float, ratio: float, accepted: bool) -> float:
        k = self.error_order + 1
        ratio = max(ratio, 1e-10)
        if accepted:
            factor = self.safety * ratio ** (0.75 * self.beta - 1.0 / k) * self.previous_ratio ** self.beta
            self.previous_ratio = max(ratio, MIN_PREVIOUS_RATIO)
            return h * min(self.ifactor, max(self.dfactor, factor))
        if not math.isfinite(ratio):
            return h * self.dfactor
        factor = self.safety * ratio ** (-1.0 / k)
        return h * min(1.0, max(self.dfactor, factor))


def fixed_grid(t0: float, t1: float, step_size: float | None) -> list[float]:
    """Step end points from ``t0`` to ``t1``: ``ceil(|t1 - t0| / step_size)`` equal steps.

    The last point is exactly ``t1``; with no ``step_size`` there is one step.
    """
    span = t1 - t0
    n = 1 if step_size is None else max(1, math.ceil(abs(span) / step_size * (1 - 1e-12)))
    return [t0 + span * (i / n) for i in range(1, n)] + [t1]
