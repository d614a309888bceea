"""Butcher tableaus: explicit Runge–Kutta methods as frozen, validated data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

_TOLERANCE = 1e-12


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method in textbook notation.

    ``a[i]`` holds the ``i`` coefficients of stage ``i`` (strictly lower triangular),
    ``c[i]`` its time fraction, ``b`` the solution weights, ``b_err`` the error weights
    (solution minus embedded solution; ``None`` for fixed-step methods). ``order`` is the
    order of ``b``; ``error_order`` the order of the embedded solution.

    ``dense`` is the continuous extension (dense output) that adaptive methods must have:
    row ``j`` holds the coefficients of ``theta**1 .. theta**q`` of the weight polynomial
    ``b_j(theta)``, so that ``y(t0 + theta h) = y0 + h sum_j b_j(theta) k_j`` with
    ``b_j(1) == b_j``. Its rows run over the stages and then over extra stages that only
    dense output needs (``dense_a``, ``dense_c``: like ``a`` and ``c``, evaluated lazily).

    A tableau is FSAL (first same as last) when its last stage is evaluated at the new
    solution: then that evaluation is the next step's first stage.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int | None = None
    dense: tuple[tuple[float, ...], ...] | None = None
    dense_a: tuple[tuple[float, ...], ...] = ()
    dense_c: tuple[float, ...] = ()
    multistep: ClassVar[bool] = False  # every step can be recomputed alone (grad="checkpoint")

    def __post_init__(self) -> None:
        self._check_shapes()
        self._check_consistency()

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    @cached_property
    def fsal(self) -> bool:
        """True when the last stage is ``f(t + h, y1)``: ``a[-1] == b`` and ``c[-1] == 1``."""
        last = self.a[-1] + (0.0,)
        return self.stages > 1 and self.c[-1] == 1.0 and all(abs(x - y) <= _TOLERANCE for x, y in zip(last, self.b))

    def _fail(self, message: str) -> None:
        raise ValueError(f"invalid Butcher tableau {self.name!r}: {message}")

    def _check_shapes(self) -> None:
        s = self.stages
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            self._fail(f"a must be strictly lower triangular with {s} rows of lengths 0..{s - 1}")
        if len(self.b) != s:
            self._fail(f"b has {len(self.b)} weights for {s} stages")
        if (self.b_err is None) != (self.error_order is None):
            self._fail("b_err and error_order must be given together")
        if self.b_err is not None and len(self.b_err) != s:
            self._fail(f"b_err has {len(self.b_err)} weights for {s} stages")
        if self.b_err is not None and self.dense is None:
            self._fail("an adaptive method needs a continuous extension (dense)")
        extra = len(self.dense_c)
        if len(self.dense_a) != extra or any(len(row) != s + i for i, row in enumerate(self.dense_a)):
            self._fail(f"dense_a must have {extra} rows of lengths {s}..{s + extra - 1}")
        if self.dense is not None and len(self.dense) != s + extra:
            self._fail(f"dense has {len(self.dense)} rows for {s} stages and {extra} extra stages")

    def _check_consistency(self) -> None:
        for i, (row, c_i) in enumerate(zip(self.a, self.c)):
            if abs(sum(row) - c_i) > _TOLERANCE:
                self._fail(f"row {i} of a sums to {sum(row)!r}, not c[{i}] = {c_i!r}")
        if abs(sum(self.b) - 1.0) > _TOLERANCE:
            self._fail(f"b sums to {sum(self.b)!r}, not 1")
        if self.b_err is not None and abs(sum(self.b_err)) > _TOLERANCE:
            self._fail(f"b_err sums to {sum(self.b_err)!r}, not 0")
        for i, (row, c_i) in enumerate(zip(self.dense_a, self.dense_c)):
            if abs(sum(row) - c_i) > _TOLERANCE:
                self._fail(f"row {i} of dense_a sums to {sum(row)!r}, not dense_c[{i}] = {c_i!r}")
        if self.dense is not None:
            b_extended = self.b + (0.0,) * len(self.dense_c)
            for j, (row, b_j) in enumerate(zip(self.dense, b_extended)):
                if abs(sum(row) - b_j) > 1e-9:
                    self._fail(f"dense row {j} gives b_{j}(1) = {sum(row)!r}, not {b_j!r}")
