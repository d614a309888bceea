"""Every method's tableau satisfies the consistency conditions, and bad tableaus are refused."""

import pytest

from noderun.solvers.methods import ADAPTIVE, ALIASES, FIXED_STEP, METHODS, get_method
from noderun.solvers.tableau import ButcherTableau


@pytest.mark.parametrize("name", [*FIXED_STEP, *ADAPTIVE])  # the tableaus
def test_tableau_invariants(name):
    tableau = METHODS[name]
    for row, c_i in zip(tableau.a, tableau.c):
        assert sum(row) == pytest.approx(c_i, abs=1e-12)
    assert sum(tableau.b) == pytest.approx(1.0, abs=1e-12)
    if tableau.adaptive:
        assert sum(tableau.b_err) == pytest.approx(0.0, abs=1e-12)
        assert tableau.error_order < tableau.order
        b_extended = tableau.b + (0.0,) * len(tableau.dense_c)
        for row, b_j in zip(tableau.dense, b_extended):
            assert sum(row) == pytest.approx(b_j, abs=1e-9)


def test_method_names_match_the_contract():
    assert list(FIXED_STEP) == ["euler", "midpoint", "heun", "heun3", "rk4"]
    assert list(ADAPTIVE) == ["adaptive_heun", "fehlberg2", "bosh3", "dopri5", "tsit5", "dopri8"]


def test_fsal_detection():
    assert METHODS["dopri5"].fsal and METHODS["tsit5"].fsal and METHODS["bosh3"].fsal
    assert not METHODS["rk4"].fsal and not METHODS["adaptive_heun"].fsal


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"a": ((), (0.4,)), "b": (0.5, 0.5), "c": (0.0, 0.5)}, "row 1 of a"),
        ({"a": ((), (0.5,)), "b": (0.4, 0.5), "c": (0.0, 0.5)}, "b sums"),
        ({"a": ((), (0.5, 0.1)), "b": (0.5, 0.5), "c": (0.0, 0.5)}, "lower triangular"),
        (
            {
                "a": ((), (0.5,)),
                "b": (0.5, 0.5),
                "c": (0.0, 0.5),
                "b_err": (0.1, 0.0),
                "error_order": 1,
                "dense": ((0.5,), (0.5,)),
            },
            "b_err sums",
        ),
        (
            {"a": ((), (0.5,)), "b": (0.5, 0.5), "c": (0.0, 0.5), "b_err": (0.1, -0.1), "error_order": 1},
            "continuous extension",
        ),
    ],
)
def test_invalid_tableau_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ButcherTableau(name="bad", order=1, **kwargs)


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="dopri5.*heun2 \\(= heun\\)"):
        get_method("dopri45")


def test_aliases_name_the_same_tableau():
    """torchdiffeq's names are accepted for the same method, and are not methods of their own."""
    assert ALIASES == {"heun2": "heun"}
    assert get_method("heun2") is METHODS["heun"]
    assert not set(ALIASES) & set(METHODS)


def test_heun3_is_heuns_third_order_method():
    tableau = METHODS["heun3"]
    assert tableau.c == (0.0, 1 / 3, 2 / 3) and tableau.b == (1 / 4, 0.0, 3 / 4)
    assert tableau.a == ((), (1 / 3,), (0.0, 2 / 3)) and tableau.order == 3 and not tableau.adaptive
