"""Implicit Runge–Kutta methods: their tableaux, orders, stability, nonlinear solves, gradients in every
mode, Newton's failures and the ``max_iters`` option."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import noderun
from noderun.solvers.implicit import ImplicitTableau
from noderun.solvers.jacobian import Jacobian
from noderun.solvers.methods import IMPLICIT
from problems import ROTATION, ROTATION_Y0, observed_order, rotation, rotation_exact

D = torch.float64
L_STABLE = ["implicit_euler", "radauIIA3", "radauIIA5", "sdirk2", "trbdf2"]
COLLOCATION = ["implicit_euler", "implicit_midpoint", "radauIIA3", "gl4", "radauIIA5", "gl6"]


def matrices(tableau):
    return (np.array(tableau.a, dtype=float), np.array(tableau.b, dtype=float), np.array(tableau.c, dtype=float))


def stability(tableau, z):
    """``R(z) = 1 + z b^T (I - z A)^-1 1``: one step of ``y' = lambda y`` multiplies ``y`` by ``R(h lambda)``."""
    a, b, _ = matrices(tableau)
    ones = np.ones(len(b))
    return 1 + z * b @ np.linalg.solve(np.eye(len(b)) - z * a, ones)


@pytest.mark.parametrize("name", IMPLICIT)
def test_weights_meet_the_quadrature_conditions_of_the_order(name):
    """``B(p)``: ``sum_i b_i c_i^(k-1) = 1/k`` for ``k <= order``, and not for ``k = order + 1`` where the
    order is the method's highest (as for Gauss–Legendre and Radau IIA)."""
    tableau = IMPLICIT[name]
    _, b, c = matrices(tableau)
    for k in range(1, tableau.order + 1):
        assert b @ c ** (k - 1) == pytest.approx(1 / k, abs=1e-14), k
    if name in COLLOCATION:
        assert abs(b @ c**tableau.order - 1 / (tableau.order + 1)) > 1e-6


@pytest.mark.parametrize("name", COLLOCATION)
def test_collocation_methods_meet_the_stage_conditions(name):
    """``C(s)``: ``sum_j a_ij c_j^(k-1) = c_i^k / k`` for ``k <= s``: with the nodes fixed by ``B(p)`` (Gauss
    points, Radau points ending at 1), this determines every coefficient of ``a``."""
    tableau = IMPLICIT[name]
    a, _, c = matrices(tableau)
    for k in range(1, tableau.stages + 1):
        np.testing.assert_allclose(a @ c ** (k - 1), c**k / k, atol=1e-14)
    if name.startswith("radau") or name == "implicit_euler":
        assert c[-1] == 1.0
        np.testing.assert_allclose(a[-1], matrices(tableau)[1], atol=1e-15)  # stiffly accurate


def test_diagonally_implicit_tableaux_have_their_published_gamma():
    gamma = 1 - 1 / math.sqrt(2)
    sdirk2 = IMPLICIT["sdirk2"]
    assert sdirk2.a == ((gamma, 0.0), (1 - gamma, gamma)) and sdirk2.b == sdirk2.a[-1]
    assert gamma**2 - 2 * gamma + 0.5 == pytest.approx(0.0, abs=1e-15)  # the root that makes it L-stable
    trbdf2 = IMPLICIT["trbdf2"]
    tr_gamma = 2 - math.sqrt(2)
    assert trbdf2.c == (0.0, tr_gamma, 1.0)
    assert trbdf2.a[1] == pytest.approx((tr_gamma / 2, tr_gamma / 2, 0.0))  # a trapezoidal stage to gamma
    assert trbdf2.a[2] == pytest.approx((math.sqrt(2) / 4, math.sqrt(2) / 4, tr_gamma / 2))
    assert trbdf2.b == trbdf2.a[2]
    assert IMPLICIT["trapezoid"].a == ((0.0, 0.0), (0.5, 0.5))


@pytest.mark.parametrize("name", IMPLICIT)
def test_stability_function(name):
    """A-stable (``|R(z)| <= 1`` on the left half-plane); L-stable ones also vanish at infinity, the
    symmetric ones keep ``|R| = 1`` there."""
    tableau = IMPLICIT[name]
    for z in (-1.0, -100.0, -1 + 10j, -1e-3 + 50j, 1e-12 + 3j):
        assert abs(stability(tableau, z)) <= 1 + 1e-9, z
    far = abs(stability(tableau, -1e9))
    assert far < 1e-6 if name in L_STABLE else far == pytest.approx(1.0, abs=1e-6)


def test_malformed_tableaux_are_refused():
    with pytest.raises(ValueError, match="full 2 x 2"):
        ImplicitTableau(name="bad", a=((1.0,), (0.5, 0.5)), b=(0.5, 0.5), c=(1.0, 1.0), order=1)
    with pytest.raises(ValueError, match="row 0 of a sums"):
        ImplicitTableau(name="bad", a=((0.5,),), b=(1.0,), c=(1.0,), order=1)
    with pytest.raises(ValueError, match="b sums"):
        ImplicitTableau(name="bad", a=((1.0,),), b=(0.9,), c=(1.0,), order=1)


A, Y0, linear, slope = ROTATION, ROTATION_Y0, rotation, observed_order


@pytest.mark.parametrize("name", IMPLICIT)
def test_global_order(name):
    order, T = IMPLICIT[name].order, 2.0
    exact = rotation_exact(T)
    hs, errors = [], []
    for n in [12, 16, 24, 32] if order >= 5 else [32, 64, 128, 256]:
        ys = noderun.odeint(
            linear,
            Y0,
            torch.tensor([0.0, T], dtype=D),
            method=name,
            rtol=1e-12,
            atol=1e-12,
            options={"step_size": T / n},
        )
        hs.append(T / n)
        errors.append((ys[-1] - exact).abs().max().item())
    assert abs(slope(hs, errors) - order) <= 0.3


def test_stiff_decay_stays_bounded_where_euler_blows_up():
    """``y' = -1000 y`` with ``h = 0.1`` (``h lambda = -100``): ten explicit Euler steps multiply ``y`` by
    ``99^10``; the implicit methods stay bounded, and the L-stable ones damp it to near zero."""
    t = torch.linspace(0.0, 1.0, 11, dtype=D)
    decay = lambda t, y: -1000.0 * y  # noqa: E731
    y0 = torch.ones(1, dtype=D)
    explicit = noderun.odeint(decay, y0, t, method="euler")
    assert explicit[-1].abs().item() > 1e15
    for name in IMPLICIT:
        ys = noderun.odeint(decay, y0, t, method=name)
        assert ys.abs().max().item() <= 1.0 + 1e-12, name
        if name in L_STABLE:
            assert ys[-1].abs().item() < 1e-3, name


def van_der_pol(t, y, mu=5.0):
    return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], dim=-1)


# The largest error each order may leave on the Van der Pol problem below with h = 0.005.
VDP_TOLERANCE = {1: 0.2, 2: 3e-3, 3: 1e-4, 4: 1e-6, 5: 1e-7, 6: 1e-8}


@pytest.mark.parametrize("name", IMPLICIT)
def test_nonlinear_problem_against_a_tight_reference(name):
    y0 = torch.tensor([[2.0, 0.0], [0.5, 1.0]], dtype=D)  # a batch: solved as one system
    t = torch.linspace(0.0, 2.0, 5, dtype=D)
    reference = noderun.odeint(van_der_pol, y0, t, method="dopri5", rtol=1e-12, atol=1e-12)
    ys = noderun.odeint(van_der_pol, y0, t, method=name, rtol=1e-10, atol=1e-10, options={"step_size": 0.005})
    assert (ys - reference).abs().max().item() < VDP_TOLERANCE[IMPLICIT[name].order]


@pytest.mark.parametrize("name", ["radauIIA3", "trbdf2"])
@pytest.mark.parametrize("shape", [(), (2, 3)])
def test_float32_states_of_any_shape(name, shape):
    y0 = torch.linspace(0.5, 1.5, math.prod(shape)).reshape(shape)
    func = lambda t, y: -y * (1 + t) + 0.1 * torch.sin(y)  # noqa: E731
    t = torch.tensor([0.0, 0.5, 1.0])
    ys = noderun.odeint(func, y0, t, method=name, options={"step_size": 0.05})
    reference = noderun.odeint(func, y0.to(D), t.to(D), method=name, options={"step_size": 0.05})
    assert ys.dtype == torch.float32 and ys.shape == (3, *shape)
    torch.testing.assert_close(ys, reference.to(torch.float32), rtol=1e-5, atol=1e-6)


class Dynamics(nn.Module):
    def __init__(self, dim=2, hidden=3):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(dim, hidden, dtype=D, generator=generator))
        self.b1 = nn.Parameter(torch.randn(hidden, dtype=D, generator=generator))
        self.w2 = nn.Parameter(0.5 * torch.randn(hidden, dim, dtype=D, generator=generator))

    def forward(self, t, y):
        return torch.tanh(y @ self.w1 + self.b1 + t) @ self.w2 - 0.5 * y


def loss_of(func, y0, grad, name, step_size):
    t = torch.tensor([0.0, 0.4, 1.0], dtype=D)
    ys = noderun.odeint(func, y0, t, method=name, grad=grad, rtol=1e-12, atol=1e-12, options={"step_size": step_size})
    return (ys**2).sum() + ys[-1, 0]


def central_differences(func, y0, name, step_size, eps=1e-6):
    """d loss / d (y0, parameters) of the discrete solution, by central differences."""
    grads = []
    for x in (y0, *func.parameters()):
        grad = torch.zeros_like(x)
        for index in np.ndindex(*x.shape):
            with torch.no_grad():
                x[index] += eps
                up = loss_of(func, y0, "backprop", name, step_size)
                x[index] -= 2 * eps
                down = loss_of(func, y0, "backprop", name, step_size)
                x[index] += eps
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


# the adjoint's backward Newton solves take Jacobians by differences (seconds each): two methods by default
GRADIENT_CASES = [
    pytest.param(name, grad, marks=pytest.mark.slow)
    if grad == "adjoint" and name not in ("gl4", "sdirk2")
    else (name, grad)
    for name in IMPLICIT
    for grad in noderun.GRAD_MODES
]


@pytest.mark.parametrize("name, grad", GRADIENT_CASES)
def test_gradients_match_finite_differences(name, grad):
    """Backprop and checkpoint differentiate the discrete solution; the adjoint solves the continuous
    adjoint equation with the same method, so it agrees up to the method's error (a finer grid here)."""
    func, y0 = Dynamics(), torch.tensor([0.3, -0.8], dtype=D)
    step_size = 0.2 if grad != "adjoint" else (0.002 if IMPLICIT[name].order == 1 else 0.02)
    expected = central_differences(func, y0, name, step_size)
    y0 = y0.clone().requires_grad_(True)
    got = torch.autograd.grad(loss_of(func, y0, grad, name, step_size), (y0, *func.parameters()))
    tolerance = 1e-7 if grad != "adjoint" else (5e-3 if IMPLICIT[name].order == 1 else 1e-3)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["gl4", "trbdf2"])
def test_checkpoint_equals_backprop(name):
    func, y0 = Dynamics(), torch.tensor([0.3, -0.8], dtype=D, requires_grad=True)
    backprop = torch.autograd.grad(loss_of(func, y0, "backprop", name, 0.1), (y0, *func.parameters()))
    checkpoint = torch.autograd.grad(loss_of(func, y0, "checkpoint", name, 0.1), (y0, *func.parameters()))
    for a, b in zip(checkpoint, backprop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def graph_size(output):
    """The number of autograd nodes ``output`` was computed through."""
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def test_the_newton_iterations_are_not_recorded():
    """With a graph, a step records one Newton update per stage group however many iterations it takes:
    a tighter tolerance (more iterations) leaves the graph the same size."""
    y0 = torch.tensor([1.0, 0.5], dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=D)
    sizes, evaluations = [], []
    for tolerance in (1e-2, 1e-12):
        stats = noderun.SolveStats()
        ys = noderun.odeint(
            van_der_pol, y0, t, method="gl4", rtol=tolerance, atol=tolerance, stats=stats, options={"step_size": 0.25}
        )
        sizes.append(graph_size(ys[-1]))
        evaluations.append(stats.nfe_forward)
    assert evaluations[1] > evaluations[0]  # the tight solve iterated more
    assert sizes[0] == sizes[1]


def test_jacobian_falls_back_to_differences_for_untransformable_functions():
    def plain(t, y):
        return torch.sin(y) * 2.0

    def calls_autograd(t, y):  # as the adjoint's backward dynamics do: torch.func cannot transform it
        with torch.enable_grad():
            x = y.detach().requires_grad_(True)
            return torch.autograd.grad(-2.0 * torch.cos(x).sum(), x)[0]

    y = torch.tensor([0.1, 0.7, -1.2], dtype=D)
    expected = torch.diag(2.0 * torch.cos(y))
    exact = Jacobian(lambda t, y: plain(torch.tensor(t), y))
    torch.testing.assert_close(exact(0.0, y), expected, rtol=1e-15, atol=1e-15)
    assert exact.transformable
    fallback = Jacobian(lambda t, y: calls_autograd(torch.tensor(t), y))
    torch.testing.assert_close(fallback(0.0, y), expected, rtol=1e-6, atol=1e-7)
    assert not fallback.transformable


def test_newton_failure_names_the_step_and_the_remedies():
    """``y' = y^2`` from 1: an implicit Euler step of 2 has no real solution, ``K = (1 + 2K)^2``."""
    blow_up = lambda t, y: y**2  # noqa: E731
    with pytest.raises(noderun.SolverError, match=r"t=0\.0 of size 2\.0.*step_size.*max_iters") as caught:
        noderun.odeint(blow_up, torch.ones(1, dtype=D), torch.tensor([0.0, 2.0], dtype=D), method="implicit_euler")
    assert "implicit_euler" in str(caught.value)
    with pytest.raises(noderun.SolverError, match="did not converge in 1 iterations"):
        noderun.odeint(
            van_der_pol,
            torch.tensor([2.0, 0.0], dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            method="gl4",
            options={"max_iters": 1},
        )


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "5", None])
def test_max_iters_must_be_a_positive_integer(bad):
    with pytest.raises(noderun.SettingError, match=r"options\['max_iters'\] must be a positive integer") as caught:
        noderun.odeint(linear, Y0, torch.tensor([0.0, 1.0], dtype=D), method="radauIIA5", options={"max_iters": bad})
    assert caught.value.key == "max_iters"


def test_max_iters_is_an_option_of_the_implicit_methods_only():
    t = torch.tensor([0.0, 1.0], dtype=D)
    ys = noderun.odeint(linear, Y0, t, method="gl6", options={"max_iters": 3, "step_size": 0.5})
    assert torch.isfinite(ys).all()
    with pytest.raises(noderun.SettingError, match="unknown options key"):
        noderun.odeint(linear, Y0, t, method="rk4", options={"max_iters": 3})
    with pytest.raises(noderun.SettingError, match=r"options\['compile'\]") as caught:
        noderun.odeint(linear, Y0, t, method="sdirk2", options={"compile": True})
    assert caught.value.key == "compile"


def test_a_state_too_large_for_a_dense_jacobian_is_refused():
    from noderun.solvers.implicit import MAX_DENSE_STATE

    with pytest.raises(ValueError, match="dense Jacobian of the state, which here has 16,385 elements"):
        noderun.odeint(
            lambda t, y: -y, torch.ones(MAX_DENSE_STATE + 1), torch.tensor([0.0, 1.0]), method="implicit_euler"
        )
