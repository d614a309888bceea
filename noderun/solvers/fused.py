"""``options={"compile": True}``: a whole Runge–Kutta step — every stage, ``func`` included, the new
state and the error ratio — traced by ``torch.compile`` into one graph.

On a small state most of a solve's time is spent launching operations, in the network as much as in
the solver; one compiled step fuses them. It costs a compilation (seconds) for every new variant —
method, state shape, dtype, grad mode, ``func`` object, or a Python attribute of ``func`` that
changed (a call counter on the module changes on every call) — so it pays off on many solves of the
same shape (training) and is off by default. Up to ``MAX_VARIANTS`` variants are kept; a solve that
would need another warns and takes its remaining steps eagerly. ``func`` must trace without graph
breaks.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .control import ErrorRatio, error_size
from .rhs import CountingRHS
from .step import StageList, Step, rk_step, weighted_sum
from .tableau import ButcherTableau

if TYPE_CHECKING:
    import torch._dynamo.exc  # at run time torch.compile imports it, on first use (importing dynamo takes seconds)

MAX_VARIANTS = 32  # compiled variants of the step per process (torch's own default is 8)


@functools.cache
def _compiled_step(tableau: ButcherTableau) -> Callable:
    """``tableau``'s step as a compiled function (made on first use: importing dynamo takes seconds)."""
    a, c, b, b_err, fsal = tableau.a[1:], tableau.c[1:], tableau.b, tableau.b_err, tableau.fsal

    def step(
        func: Callable,
        t: Tensor,
        h: Tensor,
        y0: Tensor,
        f0: Tensor,
        norm: Callable | None,
        y0_abs: Tensor | None,
        atol: Tensor | None,
        rtol: Tensor | None,
    ):
        """The stages, ``y1`` and, when adaptive, ``|y1|`` and the error size; pure tensor code. (Its asserts
        are met when the step is traced, and cost the compiled step nothing.)"""
        k = [f0]
        y1 = y0
        for a_i, c_i in zip(a, c):
            total = weighted_sum(a_i, k)
            y1 = y0 if total is None else y0 + h * total
            k.append(func((t + c_i * h).to(y0.dtype), y1))
        if not fsal:
            total = weighted_sum(b, k)
            assert total is not None  # b sums to 1
            y1 = y0 + h * total
        if b_err is None:
            return k, y1, None, None
        # the error control needs no gradient: detached, nothing is kept for it under backprop
        y1_free, y1_abs = y1.detach(), y1.detach().abs()
        total = weighted_sum(b_err, [k_j.detach() for k_j in k])
        assert total is not None  # an error estimate's weights are not all zero
        assert norm is not None and y0_abs is not None and atol is not None and rtol is not None  # given when adaptive
        error = h * total
        return k, y1, y1_abs, error_size(norm, error, y0_abs, y1_abs, y1_free, atol, rtol)

    return torch.compile(step, fullgraph=True, dynamic=False)


class FusedStepper:
    """``rk_step`` for one solve, through the compiled step; the evaluations are counted here, outside
    the graph. For an adaptive tableau the step carries its error size (``Step.error_size``). Times and
    step sizes enter the graph in at least float32, whatever the state's dtype."""

    def __init__(self, rhs: CountingRHS, tableau: ButcherTableau, error_ratio: ErrorRatio | None):
        self.rhs, self.tableau, self.error_ratio = rhs, tableau, error_ratio
        self.time_dtype = torch.promote_types(rhs.dtype, torch.float32)
        self.eager = False  # set when the compiled variants are used up: the rest of the solve runs eagerly

    def __call__(self, t: float, y0: Tensor, h: float, f0: Tensor | None) -> Step:
        if self.eager:
            return rk_step(self.rhs, self.tableau, t, y0, h, f0)
        rhs, ratio = self.rhs, self.error_ratio
        if f0 is None:
            f0 = rhs(t, y0)
        times = [torch.scalar_tensor(x, dtype=self.time_dtype, device=rhs.device) for x in (t, h)]
        with torch.no_grad():
            control = (ratio.norm, ratio.abs(y0), ratio.atol, ratio.rtol) if ratio is not None else (None,) * 4
        try:
            k, y1, y1_abs, size = self._compiled(rhs.func, *times, y0, f0, *control)
        except torch._dynamo.exc.Unsupported as error:
            reason = str(error).strip().splitlines()[0]
            raise ValueError(
                f"options['compile']: torch.compile cannot trace func into one graph ({reason}); "
                "drop compile, or keep func to tensor operations (no autograd calls, .item() or "
                "branches on tensor values)"
            ) from error
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            warnings.warn(
                f"options['compile']: {MAX_VARIANTS} variants of the step are compiled already (each "
                "method, state shape, dtype, grad mode and func object, and each change of a Python "
                "attribute of func, is one); this solve continues eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            self.eager = True
            return rk_step(rhs, self.tableau, t, y0, h, f0)
        rhs.calls += self.tableau.stages - 1
        if ratio is not None:
            ratio.keep(y1, y1_abs)
        return Step(t=t, h=h, y0=y0, y1=y1, k=StageList(k), error_size=size)

    def _compiled(self, *args):
        """The compiled step under torch's recompile limit, and when that is used up under ours (raising
        the limit for every call would cost 10–25 µs a step; it is read only when a variant is missing)."""
        compiled = _compiled_step(self.tableau)
        try:
            return compiled(*args)
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            with torch._dynamo.config.patch(recompile_limit=MAX_VARIANTS):
                return compiled(*args)
