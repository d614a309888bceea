"""The adjoint sensitivity method (Chen et al. 2018, Algorithm 1) as one autograd Function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..solvers.control import Norm, channel_norm, rms_norm
from ..solvers.integrate import integrate
from ..solvers.layout import Layout
from ..solvers.options import SolverOptions
from .problem import ODEProblem


class AdjointODE(torch.autograd.Function):
    """Forward: solve without a graph, keep only the outputs. Backward: solve the augmented state
    ``[y, a, dL/dθ]`` backwards from the last output time to the first in one solve (Algorithm 1), which at
    each output time with a gradient resets ``y`` to the forward's output there and adds the output's
    gradient to ``a``, keeping the step size across the jump."""

    @staticmethod
    def forward(ctx, problem: ODEProblem, backward_options: SolverOptions, y0: Tensor, *params: Tensor) -> Tensor:
        ys = problem.solve(y0)
        ctx.problem, ctx.backward_options = problem, backward_options
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys: Tensor):
        ys, *params = ctx.saved_tensors
        problem, opts = ctx.problem, ctx.backward_options
        n, sizes = ys[0].numel(), [p.numel() for p in params]
        dynamics = AugmentedDynamics(problem.func, ys[0], params)
        rhs = problem.rhs(ys, dynamics)
        if callable(opts.norm):
            norm = tuple_norm(opts.norm, ys[0], params, problem.layout)
        else:
            norm = adjoint_norm(opts.norm, problem.channels or (n,), sum(sizes))
        stops = gradient_stops(grad_ys)[::-1]  # output indices, last first

        def jump(i: int, state: Tensor) -> Tensor:  # at stops[i]: y from the forward solve, a + dL/dy there
            out = stops[i]
            return torch.cat([ys[out].reshape(-1), state[n : 2 * n] + grad_ys[out].reshape(-1), state[2 * n :]])

        state = torch.cat([ys[-1].reshape(-1), grad_ys[-1].reshape(-1), ys.new_zeros(sum(sizes))])
        sol = integrate(
            rhs, state, [problem.times[i] for i in stops], opts, norm, callbacks=problem.adjoint_callbacks, resets=jump
        )
        problem.stats.add_backward(rhs.calls, sol.accepted, sol.rejected, sol.work)
        state = sol.ys[-1]
        adjoint = state[n : 2 * n].view_as(ys[0]) + grad_ys[0]
        grads = [g.view_as(p).to(p.dtype) for g, p in zip(state[2 * n :].split(sizes), params)]
        return (None, None, adjoint, *grads)


def gradient_stops(grad_ys: Tensor) -> list[int]:
    """Output indices where the backward solve must stop: the ends, and every time with a non-zero
    incoming gradient (outputs the loss ignores, such as unobserved times, need no restart).
    ``grad_ys`` is ``(len(t), *state_shape)``, the state possibly 0-dimensional."""
    nonzero = grad_ys.reshape(len(grad_ys), -1).abs().amax(dim=1).gt(0).tolist()
    last = len(nonzero) - 1
    return [i for i, flag in enumerate(nonzero) if flag or i in (0, last)]


class AugmentedDynamics:
    """``d/dt [y, a, g] = [f(t, y), -aᵀ ∂f/∂y, -aᵀ ∂f/∂θ]`` on the flat augmented state."""

    def __init__(self, func, like: Tensor, params: list[Tensor]):
        self.func, self.shape, self.n, self.params = func, like.shape, like.numel(), params

    def __call__(self, t: Tensor, state: Tensor) -> Tensor:
        adjoint = state[self.n : 2 * self.n].view(self.shape)
        with torch.enable_grad():
            y = state[: self.n].view(self.shape).detach().requires_grad_(True)
            f = self.func(t, y)
            inputs = (y, *self.params)
            if f.requires_grad:
                vjps = torch.autograd.grad(f, inputs, -adjoint, allow_unused=True)
            else:
                vjps = (None,) * len(inputs)
        parts = [f.detach()] + [torch.zeros_like(x) if v is None else v for x, v in zip(inputs, vjps)]
        return torch.cat([p.reshape(-1) if p.dtype == state.dtype else p.reshape(-1).to(state.dtype) for p in parts])


def tuple_norm(norm: Callable, like: Tensor, params: list[Tensor], layout: Layout | None) -> Norm:
    """A user's callable backward norm, given the augmented state as the tuple ``(t, *y, *a, *dL/dθ)``: the
    state and its adjoint each in the state's shape (a tuple state: split into its tensors), each parameter
    gradient in its parameter's shape. ``t`` is a zero: it stands where torchdiffeq's backward state holds the
    time gradient, which noderun computes apart (``odeint._solve_with_time_gradient``)."""
    n, shapes, sizes = like.numel(), [p.shape for p in params], [p.numel() for p in params]
    split = layout.unflatten if layout is not None else lambda x: (x,)

    def as_tuple(flat: Tensor) -> Tensor:
        y, a = flat[:n].view(like.shape), flat[n : 2 * n].view(like.shape)
        grads = [g.view(shape) for g, shape in zip(flat[2 * n :].split(sizes), shapes)]
        return norm((flat.new_zeros(()), *split(y), *split(a), *grads))

    return as_tuple


def adjoint_norm(name, channels: tuple[int, ...], n_params: int) -> Norm:
    """The backward error norm over the flat augmented state ``[y, a, g]``: ``y`` and ``a`` each made of
    ``channels`` (the sizes of the state's tensors, consecutive; one size for a single tensor), ``g`` of
    ``n_params`` elements.

    Default: the largest RMS norm over the channels of ``y``, of ``a`` and over ``g``. ``"seminorm"``:
    the same without ``g`` (Kidger, Chen & Lyons 2021). ``"rms"``: over everything. (A callable is given
    the state as a tuple: ``tuple_norm``.)
    """
    if name == "rms":
        return rms_norm
    if name == "seminorm":
        return channel_norm((*channels, *channels))
    return channel_norm((*channels, *channels, n_params))
