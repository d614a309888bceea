"""Solver statistics: what a solve (and its backward pass) cost."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class NewtonWork:
    """What the Newton iterations of an implicit method's solve cost: iterations (each one evaluation per
    stage of its group), Jacobians formed and matrices factorised (the gradient's final update included)."""

    iterations: int = 0
    jacobians: int = 0
    factorizations: int = 0


@dataclass
class SolveStats:
    """Counters that ``odeint(..., stats=stats)`` adds to: forward during the call, backward during ``.backward()``.

    Pass the same object to several solves to accumulate; ``reset()`` zeroes it.
    ``nfe_*`` count evaluations of the user's ``func`` (in the backward pass, each adjoint
    evaluation is one ``func`` call plus one vector–Jacobian product). Under per-sample step
    control the steps counted are those of the sample that took the most, and ``sample_steps``
    holds every sample's accepted steps in the last such solve. Implicit methods add their Newton
    iterations, Jacobian evaluations and factorisations (``NewtonWork``; their evaluations are in ``nfe_*``).
    """

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0
    sample_steps: list[int] | None = None
    newton_iterations: int = 0
    jacobian_evaluations: int = 0
    factorizations: int = 0
    newton_iterations_backward: int = 0
    jacobian_evaluations_backward: int = 0
    factorizations_backward: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, None if f.name == "sample_steps" else 0)

    def add_forward(self, nfe: int, accepted: int = 0, rejected: int = 0, work: NewtonWork | None = None) -> None:
        self.nfe_forward += nfe
        self.steps_accepted += accepted
        self.steps_rejected += rejected
        self._add_work(work, "")

    def add_backward(self, nfe: int, accepted: int = 0, rejected: int = 0, work: NewtonWork | None = None) -> None:
        self.nfe_backward += nfe
        self.steps_accepted_backward += accepted
        self.steps_rejected_backward += rejected
        self._add_work(work, "_backward")

    def _add_work(self, work: NewtonWork | None, suffix: str) -> None:
        """Add ``work`` to the Newton counters ending in ``suffix`` (``""`` forward, ``"_backward"``)."""
        if work is not None:
            for name, value in (
                ("newton_iterations", work.iterations),
                ("jacobian_evaluations", work.jacobians),
                ("factorizations", work.factorizations),
            ):
                setattr(self, name + suffix, getattr(self, name + suffix) + value)
