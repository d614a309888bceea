"""The kinds of solver method beside explicit Runge–Kutta tableaus (``ButcherTableau``), each its own class:

- ``StepMethod``: a method that takes its own steps (implicit Runge–Kutta, fixed-step or adaptive; Adams).
  The one integration loop drives it as a tableau of its kind, through the stepper it makes (an adaptive
  one's steps carry what the error control needs);
- ``SolveMethod``: a method that solves a whole problem itself (``scipy_solver``), returning the states
  at the output times; the integration loop hands it the problem unchanged.

Both declare their own option keys (``option_keys``) and check their values (``check_options``); the
options reach them as ``SolverOptions.method_options``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from .clocks import Solution
    from .options import Names, SolverOptions
    from .step import RHS, Step

Stepper = Callable[[float, Tensor, float, "Tensor | None"], "Step"]  # (t, y, h, f0) -> Step


class StepMethod:
    """A method that is not an explicit tableau and takes its own steps (fixed-step unless it says it is
    ``adaptive``). Subclasses set ``name``, ``order`` and ``option_keys`` and make the stepper; ``multistep``
    methods carry a history from step to step (so a step cannot be recomputed alone: ``grad="checkpoint"``
    refuses them)."""

    name: str
    order: int
    adaptive = False
    fsal = False
    stages = 1
    multistep = False
    option_keys: tuple[str, ...] = ()

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        """Refuse (``SettingError``) a value of one of ``option_keys`` that no solve can use."""

    def stepper(self, rhs: RHS, y0: Tensor, opts: SolverOptions) -> Stepper:
        """``(t, y, h, f0) -> Step`` for one solve from ``y0`` (``f0``, when given, is ``rhs(t, y)``)."""
        raise NotImplementedError

    def step(self, rhs: RHS, t: float, y0: Tensor, h: float, opts: SolverOptions) -> Step:
        """One step from ``(t, y0)`` alone (single-step methods only): how ``grad="checkpoint"`` recomputes it."""
        return self.stepper(rhs, y0, opts)(t, y0, h, None)


class Adaptive(Protocol):
    """An adaptive method as its error control and dense output read it (an adaptive ``ButcherTableau`` or
    ``ImplicitTableau``): its embedded weights, error order and continuous extension are set, where a fixed-step
    method's are ``None``. That a method is adaptive is known at run time (``method.adaptive``), so the code that
    serves adaptive methods only says so once with ``cast(Adaptive, method)``."""

    @property
    def b_err(self) -> tuple[float, ...]: ...
    @property
    def error_order(self) -> int: ...
    @property
    def dense(self) -> tuple[tuple[float, ...], ...]: ...
    @property
    def dense_a(self) -> tuple[tuple[float, ...], ...]: ...
    @property
    def dense_c(self) -> tuple[float, ...]: ...


class SolveMethod:
    """A method that solves the whole problem at once. Subclasses set ``name`` and ``option_keys``."""

    name: str
    order = 0
    adaptive = False
    fsal = False
    stages = 1
    multistep = True  # no steps to recompute
    option_keys: tuple[str, ...] = ()

    def check_options(self, options: Mapping[str, Any], names: Names) -> None:
        """Refuse (``SettingError``) a value of one of ``option_keys`` that no solve can use."""

    def solve(self, rhs: RHS, y0: Tensor, times: list[float], opts: SolverOptions) -> Solution:
        """The states at ``times`` (``times[0]`` first, either direction) from ``y0``."""
        raise NotImplementedError
