"""Solver statistics: what a solve (and its backward pass) cost."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class SolveStats:
    """Counters that ``odeint(..., stats=stats)`` adds to: forward during the call, backward during ``.backward()``.

    Pass the same object to several solves to accumulate; ``reset()`` zeroes it.
    ``nfe_*`` count evaluations of the user's ``func`` (in the backward pass, each adjoint
    evaluation is one ``func`` call plus one vector–Jacobian product). Under per-sample step
    control the steps counted are those of the sample that took the most, and ``sample_steps``
    holds every sample's accepted steps in the last such solve.
    """

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0
    sample_steps: list[int] | None = None

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, None if f.name == "sample_steps" else 0)

    def add_forward(self, nfe: int, accepted: int = 0, rejected: int = 0) -> None:
        self.nfe_forward += nfe
        self.steps_accepted += accepted
        self.steps_rejected += rejected

    def add_backward(self, nfe: int, accepted: int = 0, rejected: int = 0) -> None:
        self.nfe_backward += nfe
        self.steps_accepted_backward += accepted
        self.steps_rejected_backward += rejected
