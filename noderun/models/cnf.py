"""The paper's planar continuous normalizing flow (section 4).

``dz/dt = (1/M) Σ_m σ_m(t) u_m(t) tanh(w_m(t)ᵀz + b_m(t))`` with the parameters of its M units
given by a hypernetwork of t, and ``d log p(z(t))/dt = -tr(∂f/∂z)``. State and log-density change
are integrated together in one ``noderun.odeint`` call, as the tuple state ``(z, Δ)`` of shapes ``(B, D)``
and ``(B,)``.
Data live at ``t = t_end`` and the base Gaussian at ``t = 0``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from .flow_base import GaussianBase
from .ode_block import ODEBlock, SolverSettings
from .trace import NOISES, draw_noise, exact_trace, hutchinson_trace

TRACES = ("exact", "hutchinson")


class PlanarField(nn.Module):
    """``f(t, z)``: M gated planar units whose weights, biases and gates come from a hypernetwork of t."""

    def __init__(self, dim: int, width: int, hyper_hidden: int):
        super().__init__()
        self.dim, self.width = dim, width
        self.hypernet = nn.Sequential(
            nn.Linear(1, hyper_hidden),
            nn.Tanh(),
            nn.Linear(hyper_hidden, hyper_hidden),
            nn.Tanh(),
            nn.Linear(hyper_hidden, 3 * width * dim + width),
        )

    def unit_parameters(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``w (M, D)``, ``b (M,)`` and the gated ``u (M, D)`` at time ``t``."""
        params = self.hypernet(t.reshape(1, 1)).reshape(-1)
        block = self.width * self.dim
        w = params[:block].reshape(self.width, self.dim)
        u = params[block : 2 * block].reshape(self.width, self.dim)
        gate = torch.sigmoid(params[2 * block : 3 * block].reshape(self.width, self.dim))
        return w, params[3 * block :], u * gate

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        w, b, u = self.unit_parameters(torch.as_tensor(t, dtype=z.dtype, device=z.device))
        return torch.tanh(z @ w.T + b) @ u / self.width


class CNFDynamics(nn.Module):
    """``(z, Δ) ↦ (f(t, z), -tr(∂f/∂z))``, ``z`` of shape ``(B, D)`` and ``Δ`` of shape ``(B,)`` or ``(B, 1)``
    (the derivative takes ``Δ``'s shape); the trace is Hutchinson's with ``self.noise`` when it is set (fixed
    for a whole solve), exact otherwise."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.noise: Tensor | None = None

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z, delta = state
        create_graph = torch.is_grad_enabled()  # false in no-grad solves: nothing to differentiate later
        with torch.enable_grad():
            if not (create_graph and z.requires_grad):  # a view made under no_grad can require grad, off the graph
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            if self.noise is None:
                trace = exact_trace(dz, z, create_graph)
            else:
                trace = hutchinson_trace(dz, z, self.noise, create_graph)
        d_delta = -trace.reshape(delta.shape)
        return (dz, d_delta) if create_graph else (dz.detach(), d_delta.detach())


class CNF(nn.Module):
    """``log_prob`` solves data → base (t_end → 0), ``sample_with_log_prob`` base → data. Training with
    ``trace="hutchinson"`` draws ε once per solve; evaluation (``eval()``) always uses the exact trace.
    Training with ``block.end_time_jitter`` (STEER) flows for a random time around ``t_end``.
    There is no ``augment_dim``: extra dimensions that start at zero make the data's map to the base
    non-invertible in general, and the change of variables would no longer give the data's density."""

    def __init__(
        self,
        dim: int,
        solver: SolverSettings,
        width: int = 64,
        hyper_hidden: int = 32,
        trace: str = "exact",
        noise: str = "gaussian",
        t_end: float = 10.0,
        base_variance: float = 0.1,
    ):
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"unknown model.trace {trace!r}; valid: {', '.join(TRACES)}")
        if noise not in NOISES:
            raise ValueError(f"unknown model.noise {noise!r}; valid: {', '.join(NOISES)}")
        if width < 1 or hyper_hidden < 1 or t_end <= 0:
            raise ValueError("model.width and model.hyper_hidden must be positive integers and model.t_end positive")
        self.trace, self.noise = trace, noise
        self.dynamics = CNFDynamics(PlanarField(dim, width, hyper_hidden))
        self.block = ODEBlock(self.dynamics, solver, integration_time=t_end)
        self.base = GaussianBase(dim, base_variance)

    def _solve(self, start: Tensor, times: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` and ``Δ`` at ``times`` from ``start`` (``Δ = 0``): ``(len(times), B, D)`` and ``(len(times), B)``."""
        hutchinson = self.training and self.trace == "hutchinson"
        self.dynamics.noise = draw_noise(start, self.noise) if hutchinson else None
        return cast(tuple[Tensor, Tensor], self.block.trajectory((start, start.new_zeros(len(start))), times))

    def log_prob(self, x: Tensor) -> Tensor:
        z, delta = self._solve(x, self.block.span().flip(0))
        return self.base.log_prob(z[-1]) - delta[-1]

    def sample_with_log_prob(self, n: int, like: Tensor, generator: torch.Generator | None = None):
        """``n`` samples ``(n, D)`` and their log-density, on ``like``'s device and dtype."""
        z0 = self.base.sample(n, like, generator)
        z, delta = self._solve(z0, self.block.span())
        return z[-1], self.base.log_prob(z0) + delta[-1]

    @torch.no_grad()
    def transport(self, z0: Tensor, fractions: list[float]) -> list[Tensor]:
        """Base samples carried to each fraction of the flow time (0 = base, 1 = data)."""
        times = torch.tensor([0.0, *fractions], device=z0.device) * self.block.t[-1]
        z, _ = self._solve(z0, times)
        return list(z[1:])
