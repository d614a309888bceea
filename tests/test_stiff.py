"""Adaptive implicit methods (kvaerno3/4/5, radau5): their tableaux, order, the two stiff cases against SciPy's Radau,
Newton's failures and the Jacobian options, dense output, Newton's work in ``SolveStats`` and gradients in
every mode on a small stiff problem."""

import numpy as np
import pytest
import torch
from torch import nn

import noderun
from noderun.bench.stiff import reference_end, robertson_case, scipy_solve, stiff_van_der_pol_case
from noderun.solvers.implicit import ImplicitTableau
from noderun.solvers.methods import STIFF
from problems import ROTATION_Y0, observed_order, rotation, rotation_exact, van_der_pol

D = torch.float64
ESDIRK = ["kvaerno3", "kvaerno4", "kvaerno5"]


def matrices(tableau):
    return (np.array(tableau.a, dtype=float), np.array(tableau.b, dtype=float), np.array(tableau.c, dtype=float))


@pytest.mark.parametrize("name", ESDIRK)
def test_solution_and_embedded_weights_meet_their_quadrature_conditions(name):
    tableau = STIFF[name]
    a, b, c = matrices(tableau)
    embedded = b - np.array(tableau.b_err)
    for weights, order in ((b, tableau.order), (embedded, tableau.error_order)):
        for k in range(1, order + 1):
            assert weights @ c ** (k - 1) == pytest.approx(1 / k, abs=1e-10), k
        assert abs(weights @ c**order - 1 / (order + 1)) > 1e-6  # not one order more
    np.testing.assert_allclose(a.sum(1), c, atol=1e-12)
    assert np.allclose(np.diag(a)[1:], a[1, 1]) and a[0, 0] == 0.0  # singly diagonal, explicit first stage
    np.testing.assert_allclose(a[-1], b, atol=1e-15)  # stiffly accurate: FSAL


def test_radau5_estimate_and_dense_output_are_hairers():
    """The filtered estimate vanishes for a constant derivative (its weights and f0's sum to 0); the dense
    output is the collocation polynomial, which passes through the stage states (``b_j(c_i) = a_ij``)."""
    tableau = STIFF["radau5"]
    mu = 3 + 3 ** (2 / 3) - 3 ** (1 / 3)
    assert tableau.error_filter == tableau.error_f0 == pytest.approx(1 / mu)
    assert sum(tableau.b_err) + tableau.error_f0 == pytest.approx(0.0, abs=1e-14)
    a, b, c = matrices(tableau)
    for i, c_i in enumerate(c):
        weights = [sum(p * c_i ** (q + 1) for q, p in enumerate(row)) for row in tableau.dense]
        np.testing.assert_allclose(weights, a[i], atol=1e-13)
    assert not tableau.fsal


@pytest.mark.parametrize("name", STIFF)
def test_l_stable(name):
    a, b, _ = matrices(STIFF[name])
    ones = np.ones(len(b))
    stability = lambda z: 1 + z * b @ np.linalg.solve(np.eye(len(b)) - z * a, ones)  # noqa: E731
    for z in (-1.0, -100.0, -1 + 10j, -1e-3 + 50j, -0.5 + 3j):
        assert abs(stability(z)) <= 1 + 1e-9, z
    assert abs(stability(-1e9)) < 1e-6


@pytest.mark.parametrize("name", STIFF)
def test_global_order_on_a_non_stiff_problem(name):
    """Steps held at ``h`` (``min_step = max_step = first_step``): the error falls as ``h**order``."""
    order, T = STIFF[name].order, 2.0
    hs, errors = [], []
    for n in [8, 12, 16, 24] if order >= 5 else [16, 32, 64, 128]:
        h = T / n
        ys = noderun.odeint(
            rotation,
            ROTATION_Y0,
            torch.tensor([0.0, T], dtype=D),
            method=name,
            rtol=1e-12,
            atol=1e-12,
            options={"first_step": h, "min_step": h, "max_step": h},
        )
        hs.append(h)
        errors.append((ys[-1] - rotation_exact(T)).abs().max().item())
    assert abs(observed_order(hs, errors) - order) <= 0.3


STIFF_CASES = {"van_der_pol": stiff_van_der_pol_case(tiny=False), "robertson": robertson_case(tiny=False)}


@pytest.mark.parametrize(
    "case, method",
    [
        ("robertson", "kvaerno5"),
        *[
            pytest.param(case, method, marks=pytest.mark.slow)
            for case, method in [("robertson", "radau5"), ("van_der_pol", "kvaerno5"), ("van_der_pol", "radau5")]
        ],
    ],
)
def test_stiff_cases_against_scipy_radau(case, method):
    """Within 10x the tolerance of a Radau solve at rtol 1e-10, in at most twice the accepted steps SciPy's
    Radau takes at the same tolerances."""
    case = STIFF_CASES[case]
    reference = reference_end(case).numpy()
    radau = scipy_solve(case, "Radau", case.rtol, case.atol)
    stats = noderun.SolveStats()
    ys = noderun.odeint(
        case.func,
        case.y0,
        torch.tensor([0.0, case.t_end], dtype=D),
        method=method,
        rtol=case.rtol,
        atol=case.atol,
        stats=stats,
    )
    scaled = np.abs(ys[-1].numpy() - reference) / (case.atol + case.rtol * np.abs(reference))
    assert scaled.max() < 10
    assert stats.steps_accepted <= 2 * (len(radau.t) - 1)
    # Newton's work is counted, and the Jacobian is kept across steps
    assert stats.newton_iterations >= stats.steps_accepted
    assert 0 < stats.jacobian_evaluations < stats.steps_accepted
    assert stats.factorizations >= stats.steps_accepted


@pytest.mark.parametrize("name", STIFF)
def test_dense_output_between_steps(name):
    """Outputs inside steps come from the Hermite cubic of the step's ends: they leave the steps as a solve to
    the end time alone takes them, and are as accurate as the steps' ends."""
    t = torch.linspace(0.0, 3.0, 31, dtype=D)
    func = lambda t, y: van_der_pol(t, y, mu=5.0)  # noqa: E731
    y0 = torch.tensor([2.0, 0.0], dtype=D)
    reference = noderun.odeint(func, y0, t, method="dopri8", rtol=1e-12, atol=1e-12)
    dense, alone = noderun.SolveStats(), noderun.SolveStats()
    ys = noderun.odeint(func, y0, t, method=name, rtol=1e-5, atol=1e-5, stats=dense)
    noderun.odeint(func, y0, t[[0, -1]], method=name, rtol=1e-5, atol=1e-5, stats=alone)
    assert dense.steps_accepted == alone.steps_accepted
    assert (ys - reference).abs().max().item() < 1e-4


def test_batch_diagonal_jacobian_solves_independent_samples_as_dense_does():
    mu = torch.tensor([[1.0], [100.0], [1000.0]], dtype=D)
    func = lambda t, y: torch.cat([y[:, 1:], mu * (1 - y[:, :1] ** 2) * y[:, 1:] - y[:, :1]], dim=1)  # noqa: E731
    y0 = torch.tensor([[2.0, 0.0]] * 3, dtype=D)
    t = torch.tensor([0.0, 5.0], dtype=D)
    dense, blocks = noderun.SolveStats(), noderun.SolveStats()
    expected = noderun.odeint(func, y0, t, method="kvaerno5", rtol=1e-6, atol=1e-6, stats=dense)
    got = noderun.odeint(
        func, y0, t, method="kvaerno5", rtol=1e-6, atol=1e-6, stats=blocks, options={"jacobian": "batch_diagonal"}
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert blocks.steps_accepted == pytest.approx(dense.steps_accepted, rel=0.1)


@pytest.mark.parametrize("method", ["kvaerno5", "radau5"])
def test_matrix_free_newton_krylov_solves_as_dense_does(method):
    """Newton–Krylov (``J v`` by differences, GMRES) reaches the dense solve's answer; its evaluations include
    one per Krylov vector, and it forms no matrix."""
    func = lambda t, y: van_der_pol(t, y, mu=10.0)  # noqa: E731
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5]], dtype=D)
    t = torch.tensor([0.0, 1.0], dtype=D)
    dense, krylov = noderun.SolveStats(), noderun.SolveStats()
    expected = noderun.odeint(func, y0, t, method=method, rtol=1e-6, atol=1e-6, stats=dense)
    got = noderun.odeint(
        func, y0, t, method=method, rtol=1e-6, atol=1e-6, stats=krylov, options={"jacobian": "matrix_free"}
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert krylov.nfe_forward > dense.nfe_forward


def test_newton_failures_reject_and_shrink_the_step():
    """Three Newton iterations per stage are often too few on Robertson's problem: those steps are rejected
    and the solve goes on with smaller ones to the same answer; a stage equation Newton cannot solve at any
    step size (its iterates leave the function's domain) raises ``SolverError`` naming the iteration."""
    robertson = STIFF_CASES["robertson"]
    func, y0, rtol, atol = robertson.func, robertson.y0, robertson.rtol, robertson.atol
    t = torch.tensor([0.0, 100.0], dtype=D)
    free, tight = noderun.SolveStats(), noderun.SolveStats()
    expected = noderun.odeint(func, y0, t, method="kvaerno5", rtol=rtol, atol=atol, stats=free)
    ys = noderun.odeint(func, y0, t, method="kvaerno5", rtol=rtol, atol=atol, stats=tight, options={"max_iters": 3})
    torch.testing.assert_close(ys, expected, rtol=1e-5, atol=1e-9)
    assert tight.steps_rejected > free.steps_rejected + 10
    with pytest.raises(
        noderun.SolverError,
        match=r"Newton's method .* 'kvaerno3' failed \(its iterates became "
        r"non-finite\) at t=0\.0 .*max_iters",
    ):
        noderun.odeint(
            lambda t, y: torch.sqrt(y - 1) - 1,
            torch.ones(1, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            method="kvaerno3",
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"jacobian": "sparse"}, r"unknown options\['jacobian'\]='sparse'; use 'dense'.*'matrix_free'"),
        ({"per_sample": True}, r"options\['per_sample'\] applies to explicit Runge–Kutta methods; 'kvaerno5'"),
        ({"compile": True}, r"options\['compile'\] applies to explicit Runge–Kutta methods"),
        ({"max_iters": 0}, r"options\['max_iters'\] must be a positive integer .*default 10"),
    ],
)
def test_options_refused(options, message):
    with pytest.raises(noderun.SettingError, match=message):
        noderun.odeint(rotation, ROTATION_Y0, torch.tensor([0.0, 1.0], dtype=D), method="kvaerno5", options=options)


def test_batch_diagonal_needs_a_batch_and_stays_forward():
    with pytest.raises(ValueError, match="one block per sample along dim 0"):
        noderun.odeint(
            lambda t, y: -y,
            torch.tensor(1.0, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            method="kvaerno5",
            options={"jacobian": "batch_diagonal"},
        )
    with pytest.raises(noderun.SettingError, match="adjoint's backward state .* is not a batch"):
        noderun.odeint(
            lambda t, y: -y,
            torch.ones(2, 1, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            method="kvaerno5",
            grad="adjoint",
            adjoint_params=(),
            adjoint_options={"jacobian": "batch_diagonal"},
        )


def test_adaptive_implicit_tableaux_must_be_stiffly_accurate_with_an_explicit_first_stage():
    with pytest.raises(ValueError, match="stiffly accurate with an explicit first stage"):
        ImplicitTableau(
            name="bad",
            a=((0.5, 0.0), (0.5, 0.5)),
            b=(0.5, 0.5),
            c=(0.5, 1.0),
            order=1,
            b_err=(0.5, -0.5),
            error_order=1,
        )


class StiffDynamics(nn.Module):
    """A small network beside a fast linear decay (rate 50 against 1): stiff for explicit methods."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(2, 3, dtype=D, generator=generator))
        self.b1 = nn.Parameter(torch.randn(3, dtype=D, generator=generator))
        self.w2 = nn.Parameter(0.5 * torch.randn(3, 2, dtype=D, generator=generator))
        self.decay = torch.tensor([[-50.0, 0.0], [0.0, -1.0]], dtype=D)

    def forward(self, t, y):
        return torch.tanh(y @ self.w1 + self.b1) @ self.w2 + y @ self.decay


T = torch.linspace(0.0, 1.0, 11, dtype=D)  # outputs every 0.1: the adjoint's backward state is reset there


def loss_of(func, y0, method, grad, tol, stats=None, options=None):
    ys = noderun.odeint(func, y0, T, method=method, grad=grad, rtol=tol, atol=tol, stats=stats, options=options)
    return (ys**2).sum() + ys[-1, 0]


def gradient(func, y0, method, grad, tol, stats=None, options=None):
    y0 = y0.clone().requires_grad_(True)
    loss = loss_of(func, y0, method, grad, tol, stats, options)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, (y0, *func.parameters()))])


@pytest.fixture(scope="module")
def finite_differences():
    """d loss / d (y0, parameters) by central differences of a tight explicit solve, once for every mode."""
    func, y0 = StiffDynamics(), torch.tensor([0.3, -0.8], dtype=D)
    expected, eps = [], 1e-6
    for x in (y0, *func.parameters()):
        for index in np.ndindex(*x.shape):
            with torch.no_grad():
                x[index] += eps
                up = loss_of(func, y0, "dopri5", "backprop", 1e-12)
                x[index] -= 2 * eps
                down = loss_of(func, y0, "dopri5", "backprop", 1e-12)
                x[index] += eps
            expected.append((up - down) / (2 * eps))
    return torch.stack(expected)


# kvaerno5 in every mode by default; radau5 and the matrix-free solve by backprop (their other modes: -m slow)
GRADIENT_CASES = [
    pytest.param(grad, method, jacobian, marks=pytest.mark.slow)
    if (method, jacobian) != ("kvaerno5", "dense") and grad != "backprop"
    else (grad, method, jacobian)
    for method, jacobian in [("kvaerno5", "dense"), ("radau5", "dense"), ("kvaerno5", "matrix_free")]
    for grad in noderun.GRAD_MODES
]


@pytest.mark.parametrize("grad, method, jacobian", GRADIENT_CASES)
def test_gradients_in_every_mode_agree_with_finite_differences(grad, method, jacobian, finite_differences):
    """On a stiff problem at rtol = atol = 1e-8: each mode's gradient against central differences of a tight
    explicit solve. The adjoint re-integrates the state backwards in time, where its decay becomes growth
    (e^{50 t}): outputs every 0.1 reset it before that growth matters."""
    stats = noderun.SolveStats()
    got = gradient(
        StiffDynamics(), torch.tensor([0.3, -0.8], dtype=D), method, grad, 1e-8, stats, {"jacobian": jacobian}
    )
    torch.testing.assert_close(got, finite_differences, rtol=1e-5, atol=1e-5)
    if grad == "adjoint":
        assert stats.newton_iterations_backward > 0 and stats.jacobian_evaluations_backward > 0


@pytest.mark.parametrize("name", ["kvaerno5", "radau5"])
def test_odeint_dense_and_events_take_the_implicit_methods(name):
    """A stiff decay towards cos t: the dense solution between steps matches the solve at those times, and
    an event is located on the method's own interpolant."""
    func = lambda t, y: -50.0 * (y - torch.cos(t))  # noqa: E731
    y0 = torch.tensor([1.0, 2.0], dtype=D)
    t = torch.linspace(0.0, 1.0, 7, dtype=D)
    solution = noderun.odeint_dense(func, y0, 0.0, 1.0, method=name, rtol=1e-7, atol=1e-9)
    expected = noderun.odeint(func, y0, t, method=name, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(solution(t), expected, rtol=1e-6, atol=1e-6)
    event_t, _ = noderun.odeint_event(
        lambda t, y: -y,
        torch.ones(1, dtype=D),
        torch.tensor(0.0, dtype=D),
        event_fn=lambda t, y: y[0] - 0.5,
        method=name,
        rtol=1e-8,
        atol=1e-10,
    )
    assert float(event_t) == pytest.approx(np.log(2.0), abs=1e-6)


def test_a_failed_newton_step_is_never_accepted_at_min_step():
    """A step whose Newton iteration failed carries no solution: at ``min_step`` it raises instead of being
    accepted whatever its error."""
    robertson = STIFF_CASES["robertson"]
    func, y0, rtol, atol = robertson.func, robertson.y0, robertson.rtol, robertson.atol
    with pytest.raises(noderun.SolverError, match=r"Newton's method .* failed .* min_step=0\.01"):
        noderun.odeint(
            func,
            y0,
            torch.tensor([0.0, 1.0], dtype=D),
            method="radau5",
            rtol=rtol,
            atol=atol,
            options={"max_iters": 1, "min_step": 0.01, "first_step": 0.01},
        )


def test_the_gradient_reaches_parameters_that_enter_after_the_first_stage():
    """``p`` enters ``f`` only for ``t > 0.5`` and ``y0`` needs no gradient: every step still takes the
    implicit function theorem's update, and ``dy(1)/dp`` matches dopri5's."""
    p = torch.tensor(1.0, dtype=D, requires_grad=True)
    func = lambda t, y: -20.0 * y + (p if float(t) > 0.5 else 0.0)  # noqa: E731
    grads = {}
    for method in ("kvaerno5", "radau5", "dopri5"):
        ys = noderun.odeint(
            func,
            torch.ones(1, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            method=method,
            rtol=1e-8,
            atol=1e-8,
            options={"jump_t": [0.5]},
        )
        grads[method] = torch.autograd.grad(ys[-1].sum(), p)[0]
    torch.testing.assert_close(grads["kvaerno5"], grads["dopri5"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads["radau5"], grads["dopri5"], rtol=1e-5, atol=1e-7)


def test_matrix_free_carries_to_the_adjoints_backward_solve():
    from noderun.solvers.settings import parsed

    settings = parsed("radau5", 1e-6, 1e-6, {"jacobian": "matrix_free"}, "adjoint")
    assert settings.backward.method_options == {"jacobian": "matrix_free"}
    assert parsed("radau5", 1e-6, 1e-6, {"jacobian": "batch_diagonal"}, "adjoint").backward.method_options == {}
