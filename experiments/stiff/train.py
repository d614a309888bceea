"""A neural ODE learning a stiff relaxation system from data, trained with implicit and explicit solvers
side by side (experiments/stiff/README.md).

The data: a fast variable relaxing onto a curve that moves with a slow one, ``eps v' = tanh(2 w) - v``,
``w' = 1 - 2 v + 0.3 sin(3 w)`` (``--eps`` 1e-3: a stiffness ratio of about 1000): trajectories from random
starts, observed at 40 times over [0, 5] with noise 0.01. The model knows the fast time scale and learns
both right-hand sides: ``eps v' = g(v, w) - v``, ``w' = h(v, w)``, ``g`` and ``h`` MLPs (2-32-32-1, tanh).
Each run trains one method for ``--steps`` Adam steps on full batches and writes ``config.json``,
``summary.json`` and ``history.csv`` into ``--out/eps<eps>/<method>/seed<k>``.

    .venv/bin/python experiments/stiff/train.py --method kvaerno5 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from torch import nn

import noderun

T = torch.linspace(0.0, 5.0, 40, dtype=torch.float64)


class Truth(nn.Module):
    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, t, state):
        v, w = state[..., 0], state[..., 1]
        return torch.stack([(torch.tanh(2 * w) - v) / self.eps, 1 - 2 * v + 0.3 * torch.sin(3 * w)], dim=-1)


def mlp(generator: torch.Generator) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * (1 / max(p.shape[-1], 1)) ** 0.5)
    return net


class Relaxation(nn.Module):
    """``eps v' = g(v, w) - v``, ``w' = h(v, w)``: the fast time scale known, both right-hand sides learned."""

    def __init__(self, seed: int, eps: float):
        super().__init__()
        self.eps = eps
        generator = torch.Generator().manual_seed(seed)
        self.fast, self.slow = mlp(generator), mlp(generator)

    def forward(self, t, state):
        return torch.cat([(self.fast(state) - state[..., :1]) / self.eps, self.slow(state)], dim=-1)


def trajectories(n: int, seed: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` starts in [-1, 1] x [-2, 2] and their noise-free paths at ``T``: (n, 2), (len(T), n, 2)."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    starts = unit * torch.tensor([2.0, 4.0]) - torch.tensor([1.0, 2.0])
    with torch.no_grad():
        paths = noderun.odeint(Truth(eps), starts, T, method="radau5", rtol=1e-9, atol=1e-9)
    return starts, paths


def solve(model, starts, method, rtol, grad="backprop", stats=None):
    options = {"max_num_steps": 20_000}
    if method != "dopri5":
        options["jacobian"] = "batch_diagonal"
    return noderun.odeint(
        model, starts, T, method=method, rtol=rtol, atol=rtol, grad=grad, options=options, stats=stats
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="kvaerno5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--eps", type=float, default=1e-3, help="the fast variable's time scale")
    parser.add_argument("--grad", default="backprop", choices=noderun.GRAD_MODES)
    parser.add_argument("--out", default="experiments/stiff/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out) / f"eps{args.eps:g}" / args.method / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    starts, paths = trajectories(16, 1000 + args.seed, args.eps)
    noise = torch.randn(paths.shape, generator=torch.Generator().manual_seed(args.seed), dtype=paths.dtype)
    noisy = paths + 0.01 * noise
    test_starts, test_paths = trajectories(16, 2000, args.eps)
    model = Relaxation(args.seed, args.eps)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history, started, status = [], time.perf_counter(), "completed"
    for step in range(1, args.steps + 1):
        stats = noderun.SolveStats()
        optimizer.zero_grad()
        try:
            loss = (solve(model, starts, args.method, args.rtol, args.grad, stats) - noisy).pow(2).mean()
            loss.backward()
        except noderun.SolverError as error:
            status = f"failed at step {step}: {str(error).split(';')[0]}"
            break
        optimizer.step()
        history.append(
            {
                "step": step,
                "loss": loss.item(),
                "nfe_forward": stats.nfe_forward,
                "nfe_backward": stats.nfe_backward,
                "steps": stats.steps_accepted,
                "rejected": stats.steps_rejected,
                "jacobians": stats.jacobian_evaluations,
                "wall_time_s": time.perf_counter() - started,
            }
        )
        if step % 25 == 0 or step <= 3:
            print(
                f"{args.method} seed {args.seed} step {step}: loss {loss.item():.4g}, NFE {stats.nfe_forward}, "
                f"{history[-1]['wall_time_s']:.0f} s",
                flush=True,
            )
    with torch.no_grad():  # the learned model against held-out paths, solved tightly
        test = solve(model, test_starts, "radau5", 1e-8) if status == "completed" else None
    last = history[-20:]
    summary = {
        "method": args.method,
        "seed": args.seed,
        "status": status,
        "steps_trained": len(history),
        "train_loss": history[-1]["loss"] if history else None,
        "test_rmse": None if test is None else (test - test_paths).pow(2).mean().sqrt().item(),
        "nfe_forward": sum(h["nfe_forward"] for h in last) / max(len(last), 1),
        "nfe_backward": sum(h["nfe_backward"] for h in last) / max(len(last), 1),
        "seconds_per_step": history[-1]["wall_time_s"] / len(history) if history else None,
        "solver_steps": sum(h["steps"] for h in last) / max(len(last), 1),
        "jacobians": sum(h["jacobians"] for h in last) / max(len(last), 1),
        "wall_time_s": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]) if history else ["step"])
        writer.writeheader()
        writer.writerows(history)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
