"""Step checkpointing: keep each accepted step's start, recompute the steps in reverse for the gradient."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..solvers.clocks import StepRecord
from ..solvers.integrate import integrate, retake
from ..solvers.interpolate import dense_output
from .problem import ODEProblem


class CheckpointODE(torch.autograd.Function):
    """The exact gradient of the forward discretisation (as ``grad="backprop"``) with memory of one
    state per step instead of the whole graph."""

    @staticmethod
    def forward(ctx, problem: ODEProblem, y0: Tensor, *params: Tensor) -> Tensor:
        rhs = problem.rhs(y0)
        sol = integrate(rhs, y0, problem.times, problem.options, problem.norm, record=True, callbacks=problem.callbacks)
        problem.stats.add_forward(rhs.calls, sol.accepted, sol.rejected, sol.work)
        ctx.problem = problem
        ctx.step_times = [(record.t, record.h, record.t_end) for record in sol.steps]
        ctx.output_steps = sol.output_steps
        ctx.save_for_backward(*[record.y0 for record in sol.steps], *params)
        return torch.stack(sol.ys)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys: Tensor):
        saved = ctx.saved_tensors
        n_steps = len(ctx.step_times)
        starts, params = saved[:n_steps], saved[n_steps:]
        problem, tableau = ctx.problem, ctx.problem.options.tableau
        rhs = problem.rhs(grad_ys)
        at_end, inside = defaultdict(list), defaultdict(list)
        for i, (s, theta) in enumerate(ctx.output_steps, start=1):
            (at_end[s] if theta is None else inside[s]).append((i, theta))
        adjoint = torch.zeros_like(grad_ys[0])
        param_grads = [torch.zeros_like(p) for p in params]
        for s in range(n_steps - 1, -1, -1):
            for i, _ in at_end[s]:
                adjoint = adjoint + grad_ys[i]
            t, h, t_end = ctx.step_times[s]
            with torch.enable_grad():
                y = starts[s].detach().requires_grad_(True)
                step = retake(rhs, problem.options, StepRecord(t=t, h=h, y0=y, t_end=t_end), dense=bool(inside[s]))
                outputs, grads = [step.y1], [adjoint]
                for i, theta in inside[s]:
                    outputs.append(dense_output(tableau, step, theta))
                    grads.append(grad_ys[i])
                vjps = torch.autograd.grad(outputs, (y, *params), grads, allow_unused=True)
            adjoint = vjps[0]
            param_grads = [g if v is None else g + v for g, v in zip(param_grads, vjps[1:])]
        problem.stats.add_backward(rhs.calls)
        return (None, adjoint + grad_ys[0], *param_grads)
