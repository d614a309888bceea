"""Regularisers of the learned dynamics, integrated in the same solve as the state (RNODE, Finlay et al.
2020): the kinetic energy ``∫‖f‖² dt`` and the Jacobian's squared Frobenius norm ``∫‖∂f/∂h‖²_F dt``, the
latter by Hutchinson's estimate ``‖εᵀ ∂f/∂h‖²`` with one ε per solve. Each is one extra state per sample
that starts at 0, so every method and gradient mode integrates it as it integrates the state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..odeint import solve
from ..solvers.control import rms_norm
from ..solvers.settings import SolverSettings
from ..solvers.stats import SolveStats
from ..solvers.tableau import ButcherTableau
from .trace import NOISES, draw_noise

TERMS = ("kinetic", "jacobian")


@dataclass(frozen=True)
class Regularization:
    """The weights of the two terms in the training loss (0: not integrated) and Hutchinson's noise."""

    kinetic: float = 0.0
    jacobian: float = 0.0
    noise: str = "gaussian"

    def __post_init__(self):
        if self.kinetic < 0 or self.jacobian < 0:
            raise ValueError(
                f"regularizer weights must be non-negative, got kinetic={self.kinetic}, jacobian={self.jacobian}"
            )
        if self.noise not in NOISES:
            raise ValueError(f"unknown regularizer.noise {self.noise!r}; valid: {', '.join(NOISES)}")

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms integrated: those with a positive weight, in ``TERMS`` order."""
        return tuple(term for term in TERMS if getattr(self, term) > 0)

    @property
    def name(self) -> str:
        """As conf/regularizer names it: none, kinetic, jacobian or rnode (both)."""
        return {(): "none", ("kinetic", "jacobian"): "rnode"}.get(self.terms, "".join(self.terms))

    def weight(self, term: str) -> float:
        return getattr(self, term)


class RegularizedDynamics(nn.Module):
    """``(h, r_1, …) ↦ (f(t, h), ‖f‖², …)`` per sample, for the terms of ``terms``. ``h`` is a tensor
    ``(B, …)`` or a tuple whose first tensor is the flowing state (a CNF's ``(z, Δ)``): the terms are those of
    that tensor's derivative, with the rest of the state held fixed in the Jacobian."""

    def __init__(self, func: nn.Module, terms: tuple[str, ...], noise: Tensor | None, tuple_state: bool):
        super().__init__()
        self.func, self.terms, self.noise, self.tuple_state = func, terms, noise, tuple_state

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        flow, *rest = state[: -len(self.terms)]
        if "jacobian" in self.terms:
            f, rest_derivative, noise_jacobian = self._with_noise_jacobian(t, flow, rest)
        else:
            f, rest_derivative = self._derivative(t, flow, rest)
        values = {
            "kinetic": lambda: f.pow(2).flatten(1).sum(1),
            "jacobian": lambda: noise_jacobian.pow(2).flatten(1).sum(1),
        }
        return (f, *rest_derivative, *(values[term]().to(state[-1].dtype) for term in self.terms))

    def _derivative(self, t: Tensor, flow: Tensor, rest: list[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The flowing tensor's derivative and the rest of the state's."""
        if not self.tuple_state:
            return self.func(t, flow), ()
        out = self.func(t, (flow, *rest))
        return out[0], tuple(out[1:])

    def _with_noise_jacobian(self, t: Tensor, flow: Tensor, rest: list[Tensor]):
        """``_derivative`` and ``εᵀ ∂f/∂h``: under autograd even in a no-grad solve (whose results are then
        detached: nothing will differentiate them)."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (create_graph and flow.requires_grad):
                flow = flow.detach().requires_grad_(True)  # a view made under no_grad can require grad, off the graph
            f, rest_derivative = self._derivative(t, flow, rest)
            noise_jacobian = torch.autograd.grad(f, flow, self.noise, create_graph=create_graph)[0]
        if create_graph:
            return f, rest_derivative, noise_jacobian
        return f.detach(), tuple(part.detach() for part in rest_derivative), noise_jacobian.detach()


def regularized_solve(
    func: nn.Module,
    h: Tensor | tuple[Tensor, ...],
    times: Tensor,
    settings: SolverSettings,
    stats: SolveStats,
    regularization: Regularization,
) -> tuple[Any, dict[str, Tensor]]:
    """``solve(func, h, times, settings)`` with the terms of ``regularization`` integrated beside ``h``: the
    trajectory of ``h`` and each term's integral over ``times`` (from first to last, whatever the direction),
    averaged over the batch. The terms stay out of the error control (``settings_for_terms``), so the
    state takes the steps it takes unregularised."""
    tuple_state = isinstance(h, (tuple, list))
    state = tuple(h) if tuple_state else (h,)
    flow = state[0]
    terms = regularization.terms
    noise = draw_noise(flow, regularization.noise) if "jacobian" in terms else None
    start = (*state, *(flow.new_zeros(len(flow)) for _ in terms))
    settings = settings_for_terms(settings, len(state))
    solution = solve(RegularizedDynamics(func, terms, noise, tuple_state), start, times, settings, stats=stats)
    direction = 1.0 if float(times[-1]) >= float(times[0]) else -1.0
    integrals = {term: direction * value[-1].mean() for term, value in zip(terms, solution[-len(terms) :])}
    trajectory = solution[: -len(terms)]
    return (trajectory if tuple_state else trajectory[0]), integrals


def settings_for_terms(settings: SolverSettings, count: int) -> SolverSettings:
    """``settings`` whose error norm is the default tuple norm (the largest RMS norm over the tensors) taken
    over the state's ``count`` tensors, without the terms that follow them. Kept as they are where the norm
    is not the default's to change (fixed steps, per-sample control, a norm of the user's) and for implicit
    methods, whose Newton iteration stops by the same norm and would leave the terms' stages unconverged.
    (Made on every solve: about 25 µs.)"""
    tableau, forward = settings.forward.tableau, settings.forward
    explicit_adaptive = isinstance(tableau, ButcherTableau) and tableau.adaptive
    if not explicit_adaptive or forward.per_sample or settings.options.get("norm") is not None:
        return settings

    def norm(state: tuple[Tensor, ...]) -> Tensor:
        return torch.stack([rms_norm(part) for part in state[:count]]).max()

    return dataclasses.replace(settings, options={**settings.options, "norm": norm})


def penalty(blocks: list[Any]) -> tuple[Tensor | float, dict[str, float]]:
    """The weighted sum of the regularisers the ``blocks`` integrated in their last solves, and each term's
    integral (``reg_<term>``, summed over the blocks) for the iteration's record."""
    total: Tensor | float = 0.0
    values: dict[str, float] = {}
    for block in blocks:
        for term, integral in block.integrals.items():
            total = total + block.regularization.weight(term) * integral
            values[f"reg_{term}"] = values.get(f"reg_{term}", 0.0) + integral.item()
    return total, values
