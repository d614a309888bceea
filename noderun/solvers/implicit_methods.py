"""The implicit Runge–Kutta methods, as published.

Implicit Euler, the implicit midpoint rule and the trapezoidal rule (Crank–Nicolson) are the classical
one- and two-stage methods (Hairer & Wanner, *Solving ODEs II*, Sect. IV.3). Gauss–Legendre of orders 4
and 6: Butcher (1964); Hairer, Nørsett & Wanner, *Solving ODEs I*, Sect. II.7. Radau IIA of orders 3 and
5: Ehle (1969); Hairer & Wanner, *Solving ODEs II*, Sect. IV.5. ``sdirk2``: Alexander's (1977) two-stage
L-stable SDIRK method, gamma = 1 - 1/sqrt(2). ``trbdf2``: TR-BDF2 (Bank et al. 1985) as the
three-stage ESDIRK method of Hosea & Shampine (1996), gamma = 2 - sqrt(2), d = gamma / 2,
w = sqrt(2) / 4.
"""

from __future__ import annotations

import math

from .implicit import ImplicitTableau

_SQRT3, _SQRT6, _SQRT15 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(15.0)

IMPLICIT_EULER = ImplicitTableau(name="implicit_euler", a=((1.0,),), b=(1.0,), c=(1.0,), order=1)

IMPLICIT_MIDPOINT = ImplicitTableau(name="implicit_midpoint", a=((1 / 2,),), b=(1.0,), c=(1 / 2,), order=2)

TRAPEZOID = ImplicitTableau(name="trapezoid", a=((0.0, 0.0), (1 / 2, 1 / 2)), b=(1 / 2, 1 / 2), c=(0.0, 1.0), order=2)

RADAU_IIA_3 = ImplicitTableau(
    name="radauIIA3", a=((5 / 12, -1 / 12), (3 / 4, 1 / 4)), b=(3 / 4, 1 / 4), c=(1 / 3, 1.0), order=3
)

GAUSS_LEGENDRE_4 = ImplicitTableau(
    name="gl4",
    a=((1 / 4, 1 / 4 - _SQRT3 / 6), (1 / 4 + _SQRT3 / 6, 1 / 4)),
    b=(1 / 2, 1 / 2),
    c=(1 / 2 - _SQRT3 / 6, 1 / 2 + _SQRT3 / 6),
    order=4,
)

RADAU_IIA_5 = ImplicitTableau(
    name="radauIIA5",
    a=(
        ((88 - 7 * _SQRT6) / 360, (296 - 169 * _SQRT6) / 1800, (-2 + 3 * _SQRT6) / 225),
        ((296 + 169 * _SQRT6) / 1800, (88 + 7 * _SQRT6) / 360, (-2 - 3 * _SQRT6) / 225),
        ((16 - _SQRT6) / 36, (16 + _SQRT6) / 36, 1 / 9),
    ),
    b=((16 - _SQRT6) / 36, (16 + _SQRT6) / 36, 1 / 9),
    c=((4 - _SQRT6) / 10, (4 + _SQRT6) / 10, 1.0),
    order=5,
)

GAUSS_LEGENDRE_6 = ImplicitTableau(
    name="gl6",
    a=(
        (5 / 36, 2 / 9 - _SQRT15 / 15, 5 / 36 - _SQRT15 / 30),
        (5 / 36 + _SQRT15 / 24, 2 / 9, 5 / 36 - _SQRT15 / 24),
        (5 / 36 + _SQRT15 / 30, 2 / 9 + _SQRT15 / 15, 5 / 36),
    ),
    b=(5 / 18, 4 / 9, 5 / 18),
    c=(1 / 2 - _SQRT15 / 10, 1 / 2, 1 / 2 + _SQRT15 / 10),
    order=6,
)

_GAMMA = 1 - 1 / math.sqrt(2.0)

SDIRK2 = ImplicitTableau(
    name="sdirk2", a=((_GAMMA, 0.0), (1 - _GAMMA, _GAMMA)), b=(1 - _GAMMA, _GAMMA), c=(_GAMMA, 1.0), order=2
)

_TR_GAMMA = 2 - math.sqrt(2.0)  # the trapezoidal stage ends at gamma; BDF2 completes the step
_TR_D, _TR_W = _TR_GAMMA / 2, math.sqrt(2.0) / 4

TRBDF2 = ImplicitTableau(
    name="trbdf2",
    a=((0.0, 0.0, 0.0), (_TR_D, _TR_D, 0.0), (_TR_W, _TR_W, _TR_D)),
    b=(_TR_W, _TR_W, _TR_D),
    c=(0.0, _TR_GAMMA, 1.0),
    order=2,
)

IMPLICIT_TABLEAUS = (
    IMPLICIT_EULER,
    IMPLICIT_MIDPOINT,
    TRAPEZOID,
    RADAU_IIA_3,
    GAUSS_LEGENDRE_4,
    RADAU_IIA_5,
    GAUSS_LEGENDRE_6,
    SDIRK2,
    TRBDF2,
)
