"""Adaptive implicit methods for stiff problems: Kværnø's ESDIRK pairs (A. Kværnø, "Singly diagonally
implicit Runge–Kutta methods with an explicit first stage", BIT 44, 2004): ``kvaerno3`` (order 3, embedded
2, 4 stages), ``kvaerno4`` (4/3, 5 stages) and ``kvaerno5`` (5/4, 7 stages). Each is L-stable and stiffly
accurate; its embedded solution is an earlier stage's state, so the error estimate costs nothing.

The coefficients are the published ones as diffrax writes them (its ``kvaerno3/4/5.py``), the stage
predictors (the first Newton iterate of each stage as a combination of the stages before it) those of
OrdinaryDiffEq.jl as diffrax carries them (with its correction of the second stage's).

``radau5``: the three-stage Radau IIA method of order 5 (Ehle 1969) with the error estimate and
collocation dense output of Hairer & Wanner's RADAU5 (*Solving ODEs II*, IV.8), as SciPy's ``Radau``
takes them; its three stages are solved together (a ``3n x 3n`` system).
"""

from __future__ import annotations

import math

import numpy as np

from .implicit import ImplicitTableau
from .implicit_methods import RADAU_IIA_5


def _esdirk(
    name: str, gamma: float, lower: list[list[float]], embedded: int, order: int, predictor: list[list[float]]
) -> ImplicitTableau:
    """A tableau from its strictly lower rows (stages 1..s-1) and diagonal ``gamma``; the embedded solution is
    the state of stage ``embedded``."""
    s = len(lower) + 1
    a = [[0.0] * s]
    for i, row in enumerate(lower, start=1):
        a.append([*row, gamma] + [0.0] * (s - i - 1))
    b = tuple(a[-1])
    b_hat = a[embedded][:]
    c = tuple(1.0 if abs(sum(row) - 1.0) < 1e-13 else sum(row) for row in a)  # the stages at the step's end exactly
    return ImplicitTableau(
        name=name,
        a=tuple(map(tuple, a)),
        b=b,
        c=c,
        order=order,
        b_err=tuple(x - y for x, y in zip(b, b_hat)),
        error_order=order - 1,
        predictor=tuple(map(tuple, predictor)),
    )


def _kvaerno3() -> ImplicitTableau:
    g = 0.43586652150
    a31, a32 = (-4 * g**2 + 6 * g - 1) / (4 * g), (-2 * g + 1) / (4 * g)
    a41, a42, a43 = (6 * g - 1) / (12 * g), -1 / ((24 * g - 12) * g), (-6 * g**2 + 6 * g - 1) / (6 * g - 3)
    theta = 1 / (2 * g)
    return _esdirk(
        "kvaerno3",
        g,
        [[g], [a31, a32], [a41, a42, a43]],
        embedded=2,
        order=3,
        predictor=[[1.0], [1 - theta, theta], [a31, a32, g]],
    )


def _kvaerno4() -> ImplicitTableau:
    g = 0.5728160625

    def poly(*coefficients: float) -> float:
        return float(np.polyval(coefficients, g))

    a31 = poly(144, -180, 81, -15, 1) * g / poly(12, -6, 1) ** 2
    a32 = poly(-36, 39, -15, 2) * g / poly(12, -6, 1) ** 2
    a41 = poly(-144, 396, -330, 117, -18, 1) / (12 * g**2 * poly(12, -9, 2))
    a42 = poly(72, -126, 69, -15, 1) / (12 * g**2 * poly(3, -1))
    a43 = (poly(-6, 6, -1) * poly(12, -6, 1) ** 2) / (12 * g**2 * poly(12, -9, 2) * poly(3, -1))
    a51 = poly(288, -312, 120, -18, 1) / (48 * g**2 * poly(12, -9, 2))
    a52 = poly(24, -12, 1) / (48 * g**2 * poly(3, -1))
    a53 = -(poly(12, -6, 1) ** 3) / (48 * g**2 * poly(3, -1) * poly(12, -9, 2) * poly(6, -6, 1))
    a54 = poly(-24, 36, -12, 1) / poly(24, -24, 4)
    c2, c3 = 2 * g, g + a31 + a32
    theta1, theta2 = c3 / c2, (1.0 - c2) / (c3 - c2)
    return _esdirk(
        "kvaerno4",
        g,
        [[g], [a31, a32], [a41, a42, a43], [a51, a52, a53, a54]],
        embedded=3,
        order=4,
        predictor=[[1.0], [1 - theta1, theta1], [0.0, 1 - theta2, theta2], [a41, a42, a43, g]],
    )


def _kvaerno5() -> ImplicitTableau:
    g = 0.26
    lower = [
        [g],
        [0.13, 0.84033320996790809],
        [0.22371961478320505, 0.47675532319799699, -0.06470895363112615],
        [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998],
        [0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676],
        [
            0.13659751177640291,
            0.0,
            -0.05496908796538376,
            -0.04118626728321046,
            0.62993304899016403,
            0.06962479448202728,
        ],
    ]
    predictor = [
        [1.0],
        [-1.366025403784441, 2.3660254037844357],
        [-0.19650552613122207, 0.8113579546496623, 0.38514757148155954],
        [0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0],
        [-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0],
        [*lower[4], g],
    ]
    return _esdirk("kvaerno5", g, lower, embedded=5, order=5, predictor=predictor)


def _radau5() -> ImplicitTableau:
    """Radau IIA of order 5 with Hairer's error estimate (RADAU5; as SciPy's ``Radau``): ``E`` combines the
    stage increments, ``gamma = 1 / mu``, ``mu`` the real eigenvalue of ``A⁻¹``."""
    mu = 3 + 3 ** (2 / 3) - 3 ** (1 / 3)
    gamma, root6 = 1 / mu, math.sqrt(6.0)
    e = ((-13 - 7 * root6) / 3, (-13 + 7 * root6) / 3, -1 / 3)
    a = RADAU_IIA_5.a
    b_err = tuple(gamma * sum(e[i] * a[i][j] for i in range(3)) for j in range(3))
    return ImplicitTableau(
        name="radau5",
        a=a,
        b=RADAU_IIA_5.b,
        c=RADAU_IIA_5.c,
        order=5,
        b_err=b_err,
        error_order=3,
        error_f0=gamma,
        error_filter=gamma,
    )


KVAERNO3, KVAERNO4, KVAERNO5, RADAU5 = _kvaerno3(), _kvaerno4(), _kvaerno5(), _radau5()
STIFF_TABLEAUS = (KVAERNO3, KVAERNO4, KVAERNO5, RADAU5)
