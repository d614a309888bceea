"""``noderun demo``: every method on a small nonlinear ODE, and the three gradient modes compared."""

from __future__ import annotations

import torch
from torch import nn

from .odeint import GRAD_MODES, odeint
from .solvers.method import SolveMethod
from .solvers.methods import METHODS
from .solvers.stats import SolveStats


class LotkaVolterra(nn.Module):
    """Predator–prey dynamics with learnable rates; state ``(..., 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.rates = nn.Parameter(torch.tensor([1.5, 1.0, 3.0, 1.0], dtype=torch.float64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, c, d = self.rates
        prey, predator = y[..., 0], y[..., 1]
        return torch.stack([a * prey - b * prey * predator, -c * predator + d * prey * predator], dim=-1)


def run_demo(rtol: float = 1e-6) -> int:
    func = LotkaVolterra()
    y0 = torch.tensor([[1.0, 1.0], [2.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(0.0, 10.0, 21, dtype=torch.float64)
    with torch.no_grad():
        reference = odeint(func, y0, t, method="dopri8", rtol=1e-12, atol=1e-12, options={"max_num_steps": 100_000})
    print(f"Lotka–Volterra, t in [0, 10], 2 trajectories, rtol=atol={rtol:g} (fixed-step methods: step 0.01)")
    print(f"{'method':<14}{'NFE':>8}{'steps':>8}{'max error':>12}")
    for name, method in METHODS.items():
        stats = SolveStats()
        options = (
            {}
            if isinstance(method, SolveMethod)
            else {"max_num_steps": 100_000}
            if method.adaptive
            else {"step_size": 0.01}
        )
        with torch.no_grad():
            ys = odeint(func, y0, t, method=name, rtol=rtol, atol=rtol, options=options, stats=stats)
        error = (ys - reference).abs().max().item()
        print(f"{name:<14}{stats.nfe_forward:>8}{stats.steps_accepted:>8}{error:>12.2e}")
    _compare_gradients(func, y0, t, rtol)
    return 0


def _compare_gradients(func: LotkaVolterra, y0: torch.Tensor, t: torch.Tensor, rtol: float) -> None:
    print(f"\nGradient of sum(y(t)^2) with respect to the rates, dopri5, rtol=atol={rtol:g}")
    print(f"{'grad':<12}{'NFE fwd':>9}{'NFE bwd':>9}  gradient")
    for grad in GRAD_MODES:
        stats = SolveStats()
        ys = odeint(func, y0, t, method="dopri5", rtol=rtol, atol=rtol, grad=grad, stats=stats)
        (gradient,) = torch.autograd.grad(ys.pow(2).sum(), func.rates)
        values = " ".join(f"{g:10.4f}" for g in gradient.tolist())
        print(f"{grad:<12}{stats.nfe_forward:>9}{stats.nfe_backward:>9}  {values}")
