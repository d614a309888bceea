"""An ODE block: a network layer whose output is the solution of ``dh/dt = f(t, h)`` at the end time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..odeint import GRAD_MODES, odeint
from ..solvers.methods import get_method
from ..solvers.options import FORWARD_ONLY_KEYS, parse_options
from ..solvers.stats import SolveStats


@dataclass(frozen=True)
class SolverSettings:
    """How an ODE block solves: method, tolerances, options and gradient mode, validated on creation."""

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    options: dict[str, Any] = field(default_factory=dict)
    grad: str = "adjoint"
    adjoint_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        tableau = get_method(self.method)
        parse_options(tableau, self.rtol, self.atol, self.options)
        if self.adjoint_options is not None:
            parse_options(tableau, self.rtol, self.atol, self.adjoint_options, backward=True, where="adjoint_options")
        if self.grad not in GRAD_MODES:
            raise ValueError(f"unknown grad mode {self.grad!r}; valid: {', '.join(GRAD_MODES)}")

    @classmethod
    def from_config(cls, solver: Mapping[str, Any], grad: Mapping[str, Any]) -> SolverSettings:
        """From the ``solver`` and ``grad`` config groups (unset options left to the solver's defaults)."""
        solver = dict(solver)
        method = solver.pop("method")
        tolerances = {key: solver.pop(key) for key in ("rtol", "atol") if key in solver}
        options = {key: value for key, value in solver.items() if value is not None}
        seminorm = bool(grad.get("seminorm", False)) and get_method(method).adaptive  # fixed steps: no error norm
        backward_options = {key: value for key, value in options.items() if key not in FORWARD_ONLY_KEYS}
        adjoint_options = {**backward_options, "norm": "seminorm"} if seminorm else None
        return cls(method=method, options=options, grad=grad["mode"], adjoint_options=adjoint_options, **tolerances)

    def odeint_kwargs(self) -> dict[str, Any]:
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "options": self.options,
                "grad": self.grad, "adjoint_options": self.adjoint_options}


class ODEBlock(nn.Module):
    """Maps ``h(0)`` to ``h(T)`` by solving with ``func``; fills ``self.stats`` on every solve."""

    def __init__(self, func: nn.Module, solver: SolverSettings, integration_time: float = 1.0):
        super().__init__()
        self.func, self.solver, self.stats = func, solver, SolveStats()
        self.register_buffer("t", torch.tensor([0.0, integration_time]), persistent=False)

    def forward(self, h: Tensor) -> Tensor:
        return self.trajectory(h, self.t)[-1]

    def trajectory(self, h: Tensor, times: Tensor) -> Tensor:
        """The solution at every time of ``times`` (1-D, starting at h's time): ``(len(times), *h.shape)``."""
        return odeint(self.func, h, times.to(h.dtype), stats=self.stats, **self.solver.odeint_kwargs())


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    return [module for module in model.modules() if isinstance(module, ODEBlock)]
