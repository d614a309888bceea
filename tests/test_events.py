"""Events: ``odeint(..., event_fn=...)`` against analytic event times for every method, both directions of
time, float32/float64 and tuple states; ``odeint_event``'s gradients of the event time against finite
differences and closed forms; a solve with no event; the refusals."""

import math

import pytest
import torch
from torch import nn

import noderun
from noderun.errors import SolverError
from noderun.solvers.method import StepMethod
from noderun.solvers.methods import ADAPTIVE, FIXED_STEP, METHODS
from noderun.solvers.step import StageList, Step

D = torch.float64
GRAVITY = 9.81


def decay(t, y):
    return -y


def solve_decay(method, dtype, direction, **kwargs):
    """``y' = -y`` from ``y(0) = 2`` until ``y = 0.5`` (forwards, at ``ln 4``) or ``y = 4`` (backwards, at
    ``-ln 2``)."""
    level = 0.5 if direction > 0 else 4.0
    options = {"step_size": 0.01, "interp": "cubic"} if method in FIXED_STEP else {}
    t = torch.tensor([0.0, float(direction)], dtype=dtype)
    y0 = torch.tensor([2.0], dtype=dtype)
    return noderun.odeint(decay, y0, t, event_fn=lambda t, y: y[0] - level, method=method, options=options, **kwargs)


TIME_TOLERANCE = {
    "euler": 2e-2,
    "midpoint": 1e-4,
    "heun": 1e-4,
    "heun3": 1e-5,
    "rk4": 1e-7,
    "adaptive_heun": 1e-4,
    "fehlberg2": 1e-3,
}  # fehlberg2's first-order estimate understates its error
LOW_ORDER = ("adaptive_heun", "fehlberg2")  # second order: tolerances of 1e-8 would cost ~10^4 steps


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", [*FIXED_STEP, *ADAPTIVE])
def test_event_time_of_exponential_decay(method, dtype, direction):
    kwargs = {"rtol": 1e-8, "atol": 1e-10} if dtype == D and method not in LOW_ORDER else {"rtol": 1e-6, "atol": 1e-7}
    event_t, ys = solve_decay(method, dtype, direction, **kwargs)
    expected_t = math.log(4.0) if direction > 0 else -math.log(2.0)
    tolerance = max(TIME_TOLERANCE.get(method, 1e-6), 1e-5 if dtype == torch.float32 else 0)
    assert event_t.dtype == dtype and ys.dtype == dtype and ys.shape == (2, 1)
    assert abs(float(event_t) - expected_t) < tolerance
    assert float(ys[0, 0]) == 2.0
    assert float(ys[1, 0]) == pytest.approx(2.0 * math.exp(-float(event_t)), rel=10 * tolerance)


def falling(t, state):
    height, velocity = state
    return velocity, torch.full_like(velocity, -GRAVITY)


def hits_ground(t, state):
    return state[0][0]


@pytest.mark.parametrize(
    "method,options",
    [
        ("dopri5", {}),
        ("rk4", {"step_size": 0.05, "interp": "cubic"}),
        ("midpoint", {"step_size": 0.05, "interp": "cubic"}),
    ],
)
def test_free_fall_as_a_tuple_state(method, options):
    """A free fall is quadratic in time: every method here and the cubic interpolant are exact on it."""
    height, velocity = torch.tensor([3.0], dtype=D), torch.tensor([0.0], dtype=D)
    event_t, (heights, velocities) = noderun.odeint(
        falling,
        (height, velocity),
        torch.tensor([0.0, 1.0], dtype=D),
        event_fn=hits_ground,
        method=method,
        options=options,
    )
    expected = math.sqrt(2 * 3.0 / GRAVITY)  # beyond t[1] = 1: t[1] gives only the direction
    assert float(event_t) == pytest.approx(expected, rel=1e-12)
    assert heights.shape == (2, 1) and velocities.shape == (2, 1)
    assert float(heights[1, 0]) == pytest.approx(0.0, abs=1e-12)
    assert float(velocities[1, 0]) == pytest.approx(-GRAVITY * expected, rel=1e-12)


def test_cubic_interpolation_locates_more_precisely_than_linear():
    errors = {}
    for interp in ("linear", "cubic"):
        event_t, _ = noderun.odeint(
            decay,
            torch.tensor(2.0, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            event_fn=lambda t, y: y - 0.5,
            method="rk4",
            options={"step_size": 0.25, "interp": interp},
        )
        errors[interp] = abs(float(event_t) - math.log(4.0))
    assert errors["cubic"] < errors["linear"] / 10


def test_event_at_the_initial_time_returns_it():
    y0 = torch.tensor([0.5, 1.0], dtype=D)
    event_t, ys = noderun.odeint(decay, y0, torch.tensor([0.0, 1.0], dtype=D), event_fn=lambda t, y: y[0] - 0.5)
    assert float(event_t) == 0.0
    assert torch.equal(ys, torch.stack([y0, y0]))


def test_several_event_values_end_at_the_first_sign_change():
    """``y`` falls from 2 through 1 (at ln 2) before 0.5 (at ln 4); the element that starts negative counts too."""
    event_t, _ = noderun.odeint(
        decay,
        torch.tensor(2.0, dtype=D),
        torch.tensor([0.0, 1.0], dtype=D),
        event_fn=lambda t, y: torch.stack([y - 0.5, 1.0 - y, t - 5.0]),
        rtol=1e-10,
        atol=1e-12,
    )
    assert float(event_t) == pytest.approx(math.log(2.0), rel=1e-8)


def test_event_value_may_depend_on_time():
    """``y = e^{-t}`` meets ``t / 4`` where ``t = 4 e^{-t}``: ``t = W(4)``, Lambert's W."""
    event_t, _ = noderun.odeint(
        decay,
        torch.tensor(1.0, dtype=D),
        torch.tensor([0.0, 1.0], dtype=D),
        event_fn=lambda t, y: y - t / 4,
        rtol=1e-10,
        atol=1e-12,
    )
    w = float(event_t)
    assert w * math.exp(w) == pytest.approx(4.0, rel=1e-8)


class PlainMidpoint(StepMethod):
    """The explicit midpoint rule as a ``StepMethod``: its steps carry no derivative at their start (``k``
    holds NaN), so an interpolant may use only ``y0``, ``y1``, ``t``, ``h`` and evaluations of its own."""

    name, order = "plain_midpoint_for_events", 2

    def stepper(self, rhs, y0, opts):
        def step(t, y, h, f0):
            half = y + 0.5 * h * (rhs(t, y) if f0 is None else f0)
            y1 = y + h * rhs(t + 0.5 * h, half)
            return Step(t=t, h=h, y0=y, y1=y1, k=StageList([torch.full_like(y, math.nan)]))

        return step


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_fixed_step_methods_that_are_not_tableaus(monkeypatch, interp):
    monkeypatch.setitem(METHODS, PlainMidpoint.name, PlainMidpoint())
    reference, _ = noderun.odeint(
        decay,
        torch.tensor(2.0, dtype=D),
        torch.tensor([0.0, 1.0], dtype=D),
        event_fn=lambda t, y: y - 0.5,
        method="midpoint",
        options={"step_size": 0.1, "interp": interp},
    )
    event_t, ys = noderun.odeint(
        decay,
        torch.tensor(2.0, dtype=D),
        torch.tensor([0.0, 1.0], dtype=D),
        event_fn=lambda t, y: y - 0.5,
        method=PlainMidpoint.name,
        options={"step_size": 0.1, "interp": interp},
    )
    assert float(event_t) == pytest.approx(float(reference), rel=1e-12)
    assert float(ys[1]) == pytest.approx(0.5, rel=1e-12)


class Pendulum(nn.Module):
    """``x' = v``, ``v' = -w^2 sin(x) - 0.1 v``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.3, dtype=D))

    def forward(self, t, y):
        return torch.stack([y[1], -(self.w**2) * torch.sin(y[0]) - 0.1 * y[1]])


def pendulum_loss(y0, level, mode):
    """The first time the pendulum's angle falls to ``level + t / 20`` (a moving threshold), plus a weighted
    state there, through ``odeint_event`` in gradient mode ``mode``."""

    def event_fn(t, y):
        return y[0] - level - t / 20

    interface = noderun.odeint_adjoint if mode == "adjoint" else noderun.odeint
    extra = {} if mode == "adjoint" else {"grad": mode}
    event_t, ys = noderun.odeint_event(
        PENDULUM,
        y0,
        torch.tensor(0.0, dtype=D),
        event_fn=event_fn,
        odeint_interface=interface,
        rtol=1e-11,
        atol=1e-12,
        **extra,
    )
    return event_t + 0.3 * ys[-1, 1] - 0.2 * ys[-1, 0]


PENDULUM = Pendulum()


@pytest.mark.parametrize("mode", ["backprop", "adjoint", "checkpoint"])
def test_event_time_gradient_against_finite_differences(mode):
    y0 = torch.tensor([1.0, 0.2], dtype=D, requires_grad=True)
    level = torch.tensor(-0.3, dtype=D, requires_grad=True)
    PENDULUM.zero_grad()
    pendulum_loss(y0, level, mode).backward()
    analytic = [*y0.grad.tolist(), float(level.grad), float(PENDULUM.w.grad)]
    eps = 1e-6

    def loss_at(shift_y0=(0.0, 0.0), shift_level=0.0, shift_w=0.0):
        with torch.no_grad():
            PENDULUM.w += shift_w
            value = float(
                pendulum_loss(y0.detach() + torch.tensor(shift_y0, dtype=D), level.detach() + shift_level, "backprop")
            )
            PENDULUM.w -= shift_w
        return value

    shifts = [dict(shift_y0=(eps, 0.0)), dict(shift_y0=(0.0, eps)), dict(shift_level=eps), dict(shift_w=eps)]
    numeric = []
    for shift in shifts:
        minus = {key: tuple(-x for x in value) if isinstance(value, tuple) else -value for key, value in shift.items()}
        numeric.append((loss_at(**shift) - loss_at(**minus)) / (2 * eps))
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    assert all(abs(g) > 1e-3 for g in analytic)  # every path carries a gradient


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_event_time_gradient_of_decay_in_closed_form(mode):
    """``y' = -a y`` from ``y0`` until ``y = c``: ``t* = ln(y0 / c) / a``."""
    y0 = torch.tensor(2.0, dtype=D, requires_grad=True)
    a = torch.tensor(1.5, dtype=D, requires_grad=True)
    c = torch.tensor(0.5, dtype=D, requires_grad=True)
    interface = noderun.odeint_adjoint if mode == "adjoint" else noderun.odeint
    extra = {"adjoint_params": (a,)} if mode == "adjoint" else {}
    event_t, _ = noderun.odeint_event(
        lambda t, y: -a * y,
        y0,
        0.0,
        event_fn=lambda t, y: y - c,
        odeint_interface=interface,
        rtol=1e-11,
        atol=1e-12,
        **extra,
    )
    grads = torch.autograd.grad(event_t, (y0, a, c))
    expected = (1 / (1.5 * 2.0), -math.log(4.0) / 1.5**2, -1 / (1.5 * 0.5))
    assert [float(g) for g in grads] == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_event_time_gradient_of_a_tuple_state(mode):
    """A fall from height ``h0``: ``t* = sqrt(2 h0 / g)``, ``v* = -g t*``."""
    height = torch.tensor([3.0], dtype=D, requires_grad=True)
    velocity = torch.tensor([0.0], dtype=D)
    interface = noderun.odeint_adjoint if mode == "adjoint" else noderun.odeint
    extra = {"adjoint_params": ()} if mode == "adjoint" else {}
    event_t, (_, velocities) = noderun.odeint_event(
        falling, (height, velocity), 0.0, event_fn=hits_ground, odeint_interface=interface, **extra
    )
    (dt_dh,) = torch.autograd.grad(event_t, height, retain_graph=True)
    (dv_dh,) = torch.autograd.grad(velocities[-1, 0], height)
    t_star = math.sqrt(2 * 3.0 / GRAVITY)
    assert float(dt_dh) == pytest.approx(1 / (GRAVITY * t_star), rel=1e-8)
    assert float(dv_dh) == pytest.approx(-1 / t_star, rel=1e-8)


def test_event_value_without_a_graph_gives_no_time_gradient_and_says_so():
    y0 = torch.tensor(2.0, dtype=D, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="total time derivative is zero"):
        event_t, ys = noderun.odeint_event(decay, y0, 0.0, event_fn=lambda t, y: torch.tensor(y.item() - 0.5))
    assert not event_t.requires_grad or float(torch.autograd.grad(event_t, y0, retain_graph=True)[0]) == 0.0
    assert float(torch.autograd.grad(ys[-1], y0)[0]) == pytest.approx(0.25, rel=1e-6)  # y(t) = y0 e^{-t}


def test_reverse_time_event_gradient():
    """Backwards from ``y(0) = y0`` under ``y' = -y`` until ``y = 4``: ``t* = ln(y0 / 4)``, ``dt*/dy0 = 1/y0``."""
    y0 = torch.tensor(2.0, dtype=D, requires_grad=True)
    event_t, _ = noderun.odeint_event(
        decay, y0, torch.tensor(0.0, dtype=D), event_fn=lambda t, y: y - 4.0, reverse_time=True, rtol=1e-11, atol=1e-12
    )
    assert float(event_t.detach()) == pytest.approx(-math.log(2.0), rel=1e-9)
    assert float(torch.autograd.grad(event_t, y0)[0]) == pytest.approx(0.5, rel=1e-8)


@pytest.mark.parametrize("mode", ["backprop", "adjoint", "checkpoint"])
def test_state_at_the_event_has_the_gradient_of_a_fixed_end_time(mode):
    y0 = torch.tensor([1.0, 0.2], dtype=D, requires_grad=True)
    kwargs = dict(rtol=1e-10, atol=1e-12, grad=mode)
    event_t, ys = noderun.odeint(
        PENDULUM, y0, torch.tensor([0.0, 1.0], dtype=D), event_fn=lambda t, y: y[0] + 0.3, **kwargs
    )
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    fixed = noderun.odeint(PENDULUM, y0, torch.tensor([0.0, float(event_t.detach())], dtype=D), **kwargs)
    (expected,) = torch.autograd.grad(fixed[-1].sum(), y0)
    assert torch.allclose(grad, expected, rtol=1e-6, atol=1e-8)
    assert torch.allclose(ys[-1], fixed[-1], rtol=1e-8, atol=1e-10)


def test_odeint_event_time_is_in_the_graph_with_zero_gradient():
    y0 = torch.tensor([1.0, 0.2], dtype=D, requires_grad=True)
    event_t, ys = noderun.odeint_adjoint(
        PENDULUM, y0, torch.tensor([0.0, 1.0], dtype=D), event_fn=lambda t, y: y[0] + 0.3
    )
    event_t.backward()
    assert event_t.requires_grad and torch.equal(y0.grad, torch.zeros_like(y0))


def test_no_event_within_the_step_budget_is_a_solver_error():
    never = lambda t, y: y + 1.0  # noqa: E731  (y = 2 e^{-t} stays positive)
    with pytest.raises(SolverError, match="no event found.*max_num_steps=50"):
        noderun.odeint(
            decay,
            torch.tensor(2.0, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            event_fn=never,
            options={"max_num_steps": 50},
        )
    with pytest.raises(SolverError, match="no event found.*max_num_steps=30 steps of size 0.1"):
        noderun.odeint(
            decay,
            torch.tensor(2.0, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            event_fn=never,
            method="rk4",
            options={"step_size": 0.1, "max_num_steps": 30},
        )


def test_solver_error_when_the_event_value_is_not_finite():
    with pytest.raises(SolverError, match="event_fn.*not finite"):
        noderun.odeint(
            decay,
            torch.tensor(2.0, dtype=D),
            torch.tensor([0.0, 1.0], dtype=D),
            event_fn=lambda t, y: torch.sqrt(y - 1.5) + 0.1,
        )  # NaN below 1.5 before a sign change


@pytest.mark.parametrize(
    "t,event_fn,options,match",
    [
        ([0.0, 1.0, 2.0], lambda t, y: y, {}, "exactly two times"),
        ([1.0, 1.0], lambda t, y: y, {}, "two distinct times"),
        ([0.0, 1.0], "y", {}, "event_fn must be a callable"),
        ([0.0, 1.0], lambda t, y: 1.0, {}, "non-empty floating-point tensor.*got float"),
        ([0.0, 1.0], lambda t, y: y[:0], {}, "non-empty floating-point tensor"),
        ([0.0, 1.0], lambda t, y: y * math.inf, {}, r"event_fn\(t0, y0\) is not finite"),
        ([0.0, 1.0], lambda t, y: y[0], {"per_sample": True}, "per_sample"),
    ],
)
def test_bad_event_input_is_refused(t, event_fn, options, match):
    with pytest.raises(ValueError, match=match):
        noderun.odeint(decay, torch.ones(2, 1, dtype=D), torch.tensor(t, dtype=D), event_fn=event_fn, options=options)


def test_event_options_are_checked():
    with pytest.raises(noderun.SettingError, match=r"options\['interp'\]='quadratic'.*'linear' or 'cubic'"):
        noderun.odeint(
            decay,
            torch.ones(1),
            torch.tensor([0.0, 1.0]),
            method="rk4",
            options={"interp": "quadratic"},
            event_fn=lambda t, y: y - 0.5,
        )
    with pytest.raises(noderun.SettingError, match="max_num_steps applies to a fixed-step method only with event_fn"):
        noderun.odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4", options={"max_num_steps": 10})
    with pytest.raises(ValueError, match="t0 must be one time"):
        noderun.odeint_event(decay, torch.ones(1), torch.zeros(2), event_fn=lambda t, y: y - 0.5)


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
def test_a_fixed_step_event_state_comes_from_the_locating_grid_in_every_mode(grad):
    """The adjoint and checkpoint solve again to the event time: on the grid that located it (steps of
    |t[1] - t[0]| here), not in one step, so every mode agrees to the method's error at that step."""
    rate = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
    _, ys = noderun.odeint(
        lambda t, y: rate * y,
        y0,
        torch.tensor([0.0, 0.25], dtype=torch.float64),
        method="rk4",
        event_fn=lambda t, y: (y - math.e**2).sum(),
        grad=grad,
        adjoint_params=(rate,),
    )
    assert float(ys[-1].detach()) == pytest.approx(math.e**2, rel=1e-4)


def test_step_callbacks_run_in_the_solve_that_locates_the_event():
    class Counted(nn.Module):
        steps = 0

        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y0, dt):
            self.steps += 1

    func, stats = Counted(), noderun.SolveStats()
    noderun.odeint(func, torch.ones(1), torch.tensor([0.0, 1.0]), event_fn=lambda t, y: (y - 0.5).sum(), stats=stats)
    assert func.steps == stats.steps_accepted + stats.steps_rejected > 0
