"""Options that shape the steps: perturb and grid_constructor (fixed step), min_step/max_step, step_t and
jump_t (adaptive), and the step callbacks of func — in the forward solve and the adjoint's backward one."""

import math
import warnings

import pytest
import torch
from torch import nn

from noderun import SolveStats, odeint, odeint_adjoint
from noderun.solvers.methods import ADAPTIVE

T01 = torch.tensor([0.0, 1.0], dtype=torch.float64)


class Jump:
    """``y' = -y/2`` before ``t = 0.5``, ``y' = y^2`` after: a derivative discontinuous at 0.5."""

    def __init__(self):
        self.nfe = 0

    def __call__(self, t, y):
        self.nfe += 1
        return -0.5 * y if t < 0.5 else y**2


def jump_exact(y0, t):
    y_half = y0 * math.exp(-0.25)
    return y_half / (1 - y_half * (t - 0.5))


@pytest.mark.parametrize("perturb", [True, False])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_perturb_moves_evaluations_off_the_grid_forward_and_backward(method, perturb):
    times = []

    def f(t, y):
        times.append(t.item())
        return -y

    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ys = odeint_adjoint(f, y0, T01, method=method, options={"step_size": 0.5, "perturb": perturb}, adjoint_params=())
    assert (0.0 in times, 0.5 in times) == (not perturb, not perturb)
    assert all(0.0 < t < 1.0 for t in times) == perturb
    times.clear()
    ys.sum().backward()
    assert (1.0 in times, 0.5 in times) == (not perturb, not perturb)


def test_perturb_takes_the_one_sided_value_at_a_jump():
    """Euler from 0 to 1 in two steps on a jump at 0.5: with perturb the step from 0.5 uses the right-hand
    derivative even though the grid point is exactly the jump time."""

    def step(t, y):
        return (t > 0.5).to(y.dtype) * torch.ones_like(y)

    y0 = torch.zeros(1, dtype=torch.float64)
    plain = odeint(step, y0, T01, method="euler", options={"step_size": 0.5})
    perturbed = odeint(step, y0, T01, method="euler", options={"step_size": 0.5, "perturb": True})
    assert float(plain[-1]) == 0.0 and float(perturbed[-1]) == 0.5


@pytest.mark.parametrize("grad", ["backprop", "adjoint", "checkpoint"])
def test_grid_constructor_sets_the_steps(grad):
    calls = []

    def grid(func, y0, t):
        calls.append(t.tolist())
        return torch.linspace(float(t[0]), float(t[-1]), 11, dtype=torch.float64)

    y0 = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    ys = odeint(
        lambda t, y: y, y0, T01, method="euler", options={"grid_constructor": grid}, grad=grad, adjoint_params=()
    )
    assert float(ys[1].detach()) == pytest.approx(1.1**10, rel=1e-12)
    ys[1].backward()
    assert float(y0.grad) == pytest.approx(1.1**10, rel=1e-12)
    assert calls[0] == [0.0, 1.0] and (grad != "adjoint" or calls[1] == [1.0, 0.0])


def test_grid_constructor_adds_the_output_times_and_refuses_a_bad_grid():
    stats = SolveStats()

    def grid(f, y0, t):
        return torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)

    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    odeint(
        lambda t, y: -y,
        torch.ones(1, dtype=torch.float64),
        t,
        method="euler",
        options={"grid_constructor": grid},
        stats=stats,
    )
    assert stats.steps_accepted == 3  # 0 -> 0.3 -> 0.5 -> 1
    with pytest.raises(ValueError, match="grid_constructor.*from t\\[0\\]"):
        odeint(
            lambda t, y: -y,
            torch.ones(1),
            T01,
            method="euler",
            options={"grid_constructor": lambda f, y0, t: torch.tensor([0.0, 0.5])},
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_jump_t_costs_fewer_evaluations_and_is_accurate(method, dtype):
    y0 = torch.tensor([1.0, 2.0], dtype=dtype)
    plain, jumped = Jump(), Jump()
    tol = 1e-6 if dtype == torch.float64 else 1e-5
    odeint(plain, y0, T01, rtol=tol, atol=tol, method=method)
    ys = odeint(jumped, y0, T01, rtol=tol, atol=tol, method=method, options={"jump_t": torch.tensor([0.5])})
    assert jumped.nfe < plain.nfe
    exact = jump_exact(y0.double(), 1.0)
    bound = 0.02 if method == "fehlberg2" else 20 * tol  # fehlberg2's first-order estimate understates its error
    assert torch.allclose(ys[-1].double(), exact, rtol=bound, atol=bound)


def test_jump_t_in_the_adjoint_costs_fewer_backward_evaluations():
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    counts = []
    for options in ({}, {"jump_t": [0.5]}):
        f = Jump()
        ys = odeint_adjoint(f, y0, T01, rtol=1e-6, atol=1e-6, options=options, adjoint_params=())
        f.nfe = 0
        ys.sum().backward()
        counts.append(f.nfe)
    assert counts[1] < counts[0]


def test_step_t_puts_a_step_end_on_each_time_and_keeps_the_solution():
    starts = []

    class F(nn.Module):
        def forward(self, t, y):
            return -y

        def callback_accept_step(self, t0, y0, dt):
            starts.append(float(t0 + dt))

    y0 = torch.ones(2, dtype=torch.float64)
    ys = odeint(F(), y0, T01, rtol=1e-4, atol=1e-4, options={"step_t": [0.123, 0.77]})
    assert 0.123 in starts and 0.77 in starts
    assert torch.allclose(ys[-1], y0 * math.exp(-1.0), rtol=1e-4)


def test_step_t_and_jump_t_outside_the_interval_are_ignored_and_reversed_time_works():
    y0 = torch.ones(1, dtype=torch.float64)
    back = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ys = odeint(Jump(), y0, back, rtol=1e-8, atol=1e-8, options={"jump_t": [0.5, 3.0, -1.0]})
    reference = odeint(Jump(), y0, torch.tensor([1.0, 0.5], dtype=torch.float64), rtol=1e-10, atol=1e-10)
    reference = odeint(
        lambda t, y: -0.5 * y, reference[-1], torch.tensor([0.5, 0.0], dtype=torch.float64), rtol=1e-10, atol=1e-10
    )
    assert torch.allclose(ys[-1], reference[-1], rtol=1e-6)


def test_max_step_bounds_every_step_and_min_step_accepts_every_step():
    sizes = []

    class F(nn.Module):
        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y0, dt):
            sizes.append(abs(float(dt)))

    odeint(F(), torch.ones(2), torch.tensor([0.0, 10.0]), options={"max_step": 0.5})
    assert max(sizes) <= 0.5 and len(sizes) >= 20
    sizes.clear()
    stats = SolveStats()
    odeint(
        F(), torch.ones(2), torch.tensor([0.0, 10.0]), rtol=1e-12, atol=1e-12, options={"min_step": 2.0}, stats=stats
    )
    assert min(sizes) >= 2.0 and stats.steps_rejected == 0 and stats.steps_accepted == 5


class Counted(nn.Module):
    """A small network that counts its step callbacks, forward and adjoint."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
        self.counts = {name: 0 for name in ("step", "accept", "reject", "step_adj", "accept_adj", "reject_adj")}

    def forward(self, t, y):
        return self.net(y)

    def _count(name):
        def callback(self, t0, y0, dt):
            assert t0.dim() == 0 and dt.dim() == 0 and y0.shape[-1] >= 2
            self.counts[name] += 1

        return callback

    callback_step = _count("step")
    callback_accept_step = _count("accept")
    callback_reject_step = _count("reject")
    callback_step_adjoint = _count("step_adj")
    callback_accept_step_adjoint = _count("accept_adj")
    callback_reject_step_adjoint = _count("reject_adj")


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4", "euler"])
def test_callbacks_count_every_step_forward_and_backward(method):
    func = Counted()
    fixed = method in ("rk4", "euler")
    options = {"step_size": 0.1} if fixed else {}
    stats = SolveStats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fixed-step methods warn that they ignore accept/reject callbacks
        ys = odeint_adjoint(
            func, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), method=method, options=options, stats=stats
        )
    ys.sum().backward()
    c = func.counts
    if fixed:
        assert (c["step"], c["step_adj"]) == (10, 10) and c["accept"] == c["reject"] == 0
    else:
        assert c["step"] == c["accept"] + c["reject"] == stats.steps_accepted + stats.steps_rejected
        assert (
            c["step_adj"]
            == c["accept_adj"] + c["reject_adj"]
            == (stats.steps_accepted_backward + stats.steps_rejected_backward)
        )


def test_a_callback_the_method_never_calls_is_warned_about():
    func = Counted()
    with pytest.warns(RuntimeWarning, match="does not call the step callbacks.*callback_accept_step"):
        odeint(func, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), method="rk4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(func, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), method="dopri5")


def test_a_tuple_state_reaches_the_callbacks_as_a_tuple():
    seen = []

    class F(nn.Module):
        def forward(self, t, state):
            return tuple(-x for x in state)

        def callback_step(self, t0, y0, dt):
            seen.append(tuple(x.shape for x in y0))

    odeint(F(), (torch.ones(3), torch.ones(2, 2)), torch.tensor([0.0, 1.0]))
    assert seen and all(shapes == ((3,), (2, 2)) for shapes in seen)


def test_a_step_of_min_step_is_accepted_though_t_end_minus_t_rounds_above_it():
    """0.1 + 0.1 - 0.1 is 0.10000000000000003: the step is still one of min_step, accepted whatever its error."""
    ys = odeint(
        lambda t, y: torch.cos(50 * t) * torch.ones_like(y),
        torch.zeros(1, dtype=torch.float64),
        torch.tensor([0.0, 3.0], dtype=torch.float64),
        rtol=1e-10,
        atol=1e-12,
        options={"min_step": 0.1, "max_num_steps": 2000},
    )
    assert torch.isfinite(ys).all()


class TwoRates(nn.Module):
    """``y' = a`` before ``t = 0.5`` and ``y' = b`` after: ``y(1) = y0 + (a + b) / 2``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, t, y):
        return torch.where(t < 0.5, self.a, self.b) * torch.ones_like(y)


@pytest.mark.parametrize("grad", ["backprop", "adjoint", "checkpoint"])
@pytest.mark.parametrize(
    "method, options", [("rk4", {"step_size": 0.25, "perturb": True}), ("dopri5", {"jump_t": [0.5]})]
)
def test_every_gradient_mode_sees_the_shifted_ends(method, options, grad):
    func = TwoRates()
    ys = odeint(func, torch.ones(1, dtype=torch.float64), T01, method=method, options=options, grad=grad)
    grads = torch.autograd.grad(ys[-1].sum(), (func.a, func.b))
    assert [float(g) for g in grads] == pytest.approx([0.5, 0.5], abs=1e-3)
