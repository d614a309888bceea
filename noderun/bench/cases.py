"""The benchmark's fixed problems: each a function ``f(t, y)``, a start state, output times, a method
with its tolerances, and the gradient modes whose backward pass is measured. ``tiny`` shrinks every
state to seconds of work (for tests); the problems keep their shape."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models.cnf import CNFDynamics, PlanarField
from ..models.latent_ode import LatentDynamics
from ..models.odenet import ConvODEFunc

BACKWARD_MODES = ("backprop", "adjoint", "adjoint_seminorm", "checkpoint")


@dataclass
class Case:
    name: str
    func: nn.Module
    y0: Tensor
    t: Tensor
    method: str
    rtol: float
    atol: float
    backward: tuple[str, ...] = ()
    forward_modes: tuple[str, ...] = ()  # noderun's other forward solves (``measure.FORWARD_MODES``)


class MLPField(nn.Module):
    """``f(t, y)`` = a softplus MLP of y alone."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(), nn.Linear(hidden, dim)
        )

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


class VanDerPol(nn.Module):
    """A batch of Van der Pol oscillators ``x'' = mu (1 - x²) x' - x``, one stiffness ``mu`` per row."""

    mu: Tensor  # a buffer

    def __init__(self, mu: Tensor):
        super().__init__()
        self.register_buffer("mu", mu)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x**2) * v - x], dim=1)


class VanDerPolInState(nn.Module):
    """Van der Pol on ``[x, v, mu]``: each row's ``mu`` is the state's last column, with derivative 0, so
    nothing per sample lies outside the state and a per-sample solve may drop finished rows (``compact``)."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v, mu = y.unbind(1)
        return torch.stack([v, mu * (1 - x**2) * v - x, torch.zeros_like(mu)], dim=1)


class ScaledField(nn.Module):
    """``f(t, y) = rate * mlp(y)``, one rate per row: a batch whose samples move on different time scales."""

    rates: Tensor  # a buffer

    def __init__(self, rates: Tensor, dim: int, hidden: int):
        super().__init__()
        self.register_buffer("rates", rates)
        self.field = MLPField(dim, hidden)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.rates[:, None] * self.field(t, y)


class RatesInState(nn.Module):
    """``ScaledField`` with each row's rate as the state's last column (derivative 0): ``[rate * mlp(y), 0]``.
    Nothing per sample lies outside the state, so a per-sample solve may drop finished rows (``compact``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.field = MLPField(dim, hidden)

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        y, rates = state[:, :-1], state[:, -1:]
        return torch.cat([rates * self.field(t, y), torch.zeros_like(rates)], dim=1)


class ConcatenatedCNF(nn.Module):
    """The CNF's dynamics on one tensor ``[z, Δ]`` of shape ``(B, D+1)`` (its error one RMS norm over both):
    the state this case has always solved, for noderun and torchdiffeq alike."""

    def __init__(self, dynamics: CNFDynamics):
        super().__init__()
        self.dynamics = dynamics

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        dz, d_delta = self.dynamics(t, (state[:, :-1], state[:, -1:]))
        return torch.cat([dz, d_delta], dim=1)


def mlp_case(tiny: bool) -> Case:
    return Case(
        "mlp",
        MLPField(4, 32),
        torch.randn(8 if tiny else 64, 4),
        torch.tensor([0.0, 10.0]),
        "dopri5",
        1e-6,
        1e-6,
        BACKWARD_MODES,
        ("compiled",),
    )


def odenet_case(tiny: bool) -> Case:
    channels, batch = (8, 2) if tiny else (64, 128)
    return Case(
        "odenet_block",
        ConvODEFunc(channels),
        torch.randn(batch, channels, 6, 6),
        torch.tensor([0.0, 1.0]),
        "dopri5",
        1e-3,
        1e-3,
        ("backprop", "adjoint"),
        ("compiled",),
    )


def van_der_pol_case(tiny: bool) -> Case:
    batch = 8 if tiny else 256
    y0 = torch.tensor([2.0, 0.0]).repeat(batch, 1)
    return Case(
        "van_der_pol",
        VanDerPol(torch.linspace(1.0, 25.0, batch)),
        y0,
        torch.tensor([0.0, 1.0 if tiny else 10.0]),
        "dopri5",
        1e-5,
        1e-5,
        forward_modes=("per_sample",),
    )


def mixed_scales_case(tiny: bool) -> Case:
    """A heterogeneous batch: the MLP field at 256 time scales, rates log-spaced over two decades."""
    batch = 8 if tiny else 256
    rates = torch.logspace(-1.0, 1.0, batch)
    return Case(
        "mixed_scales",
        ScaledField(rates, 4, 32),
        torch.randn(batch, 4),
        torch.tensor([0.0, 1.0 if tiny else 5.0]),
        "dopri5",
        1e-6,
        1e-6,
        forward_modes=("per_sample",),
    )


def mixed_rows_case(tiny: bool) -> Case:
    """``mixed_scales`` with each rate in the state (``RatesInState``) and 256 hidden units, so that an
    evaluation's cost grows with its rows: per-sample control with and without dropping finished samples."""
    batch = 8 if tiny else 256
    rates = torch.logspace(-1.0, 1.0, batch)[:, None]
    return Case(
        "mixed_rows",
        RatesInState(4, 16 if tiny else 256),
        torch.cat([torch.randn(batch, 4), rates], dim=1),
        torch.tensor([0.0, 1.0 if tiny else 5.0]),
        "dopri5",
        1e-6,
        1e-6,
        forward_modes=("per_sample", "per_sample_compact"),
    )


def latent_ode_case(tiny: bool) -> Case:
    """The spiral preset's latent solve: 4-D latent, 20 hidden units, 100 output times over [0, 5], a loss on
    every one (the adjoint's backward solve jumps at each)."""
    return Case(
        "latent_ode",
        LatentDynamics(4, 20),
        torch.randn(10 if tiny else 100, 4),
        torch.linspace(0.0, 5.0, 100),
        "dopri5",
        1e-5,
        1e-5,
        ("backprop", "adjoint", "checkpoint"),
        ("compiled",),
    )


def cnf_case(tiny: bool) -> Case:
    """The moons preset's solve of data to base: 64 planar units, exact trace, from t = 10 to 0."""
    state = torch.cat([torch.randn(16 if tiny else 512, 2) * 0.5, torch.zeros(16 if tiny else 512, 1)], dim=1)
    func = ConcatenatedCNF(CNFDynamics(PlanarField(2, 8 if tiny else 64, 32)))
    return Case("cnf", func, state, torch.tensor([10.0, 0.0]), "dopri5", 1e-5, 1e-5, ("adjoint",))


CASES = {
    "mlp": mlp_case,
    "odenet_block": odenet_case,
    "van_der_pol": van_der_pol_case,
    "mixed_scales": mixed_scales_case,
    "mixed_rows": mixed_rows_case,
    "latent_ode": latent_ode_case,
    "cnf": cnf_case,
}


def build_cases(names: list[str], tiny: bool, seed: int = 0) -> list[Case]:
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    cases = []
    for name in names:
        torch.manual_seed(seed)
        cases.append(CASES[name](tiny))
    return cases
