"""The bench's latent-ODE case (100 samples, 4-D latent, 100 output times over [0, 5], a loss on every
output) in float64: for each gradient mode and tolerance, the forward and backward evaluations and the
gradient's relative error against backprop through a dopri5 solve at 1e-12.

    .venv/bin/python experiments/bench/latent_gradients.py
"""

from __future__ import annotations

import copy

import torch

from noderun import SolveStats, odeint
from noderun.bench.cases import build_cases

MODES = ("backprop", "adjoint", "checkpoint")
TOLERANCES = (1e-3, 1e-5, 1e-7)


def gradient(case, target, grad: str, tol: float) -> tuple[torch.Tensor, SolveStats]:
    func, stats = copy.deepcopy(case.func).double(), SolveStats()
    ys = odeint(func, case.y0.double(), case.t.double(), method="dopri5", rtol=tol, atol=tol, grad=grad, stats=stats)
    grads = torch.autograd.grad((ys - target).pow(2).mean(), list(func.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]), stats


def main() -> None:
    torch.set_num_threads(1)
    case = build_cases(["latent_ode"], tiny=False)[0]
    target = torch.randn(len(case.t), *case.y0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference, _ = gradient(case, target, "backprop", 1e-12)
    print("| grad | rtol = atol | NFE forward | NFE backward | backward steps | gradient error |")
    print("|---|---|---|---|---|---|")
    for grad in MODES:
        for tol in TOLERANCES:
            got, stats = gradient(case, target, grad, tol)
            error = float((got - reference).norm() / reference.norm())
            steps = stats.steps_accepted_backward if grad == "adjoint" else ""
            print(f"| {grad} | {tol:.0e} | {stats.nfe_forward} | {stats.nfe_backward} | {steps} | {error:.2e} |")


if __name__ == "__main__":
    main()
