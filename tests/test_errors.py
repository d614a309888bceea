"""Bad input gets a ValueError naming the problem; a failing solve gets a SolverError, never a hang."""

import pytest
import torch

import noderun
from noderun import SolverError, odeint

Y0 = torch.tensor([1.0, 2.0])
T = torch.tensor([0.0, 1.0])


def decay(t, y):
    return -y


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "rk45"}, "unknown method 'rk45'.*dopri5"),
        ({"grad": "adjoint_seminorm"}, "unknown grad.*backprop, adjoint, checkpoint"),
        ({"rtol": 0.0}, "rtol must be a finite positive number"),
        ({"atol": -1e-6}, "atol must be a finite positive number"),
        ({"rtol": float("nan")}, "rtol"),
        ({"atol": "tight"}, "atol"),
        ({"method": "rk4", "options": {"step_size": 0.0}}, "step_size"),
        ({"method": "euler", "options": {"step_size": float("inf")}}, "step_size"),
        ({"method": "rk4", "options": {"step_size": -0.1}}, "step_size"),
        (
            {"method": "rk4", "options": {"first_step": 0.1}},
            "unknown options key.*first_step.*accepted keys: step_size",
        ),
        ({"method": "dopri5", "options": {"step_size": 0.1}}, "unknown options key.*step_size.*first_step"),
        ({"options": {"max_num_steps": 0}}, "max_num_steps"),
        ({"options": {"max_num_steps": 10.5}}, "max_num_steps"),
        ({"options": {"norm": "seminorm"}}, "adjoint_options"),
        ({"options": {"norm": "max"}}, "unknown norm"),
        ({"options": {"beta": 0.5}}, r"beta.*from 0 \(integral control\) to 0.1"),
        ({"options": {"beta": -0.01}}, "beta"),
        ({"grad": "adjoint"}, "nn.Module or pass adjoint_params"),
        ({"grad": "checkpoint"}, "nn.Module or pass adjoint_params"),
        ({"grad": "adjoint", "adjoint_params": (), "adjoint_options": {"step_size": 0.1}}, "adjoint_options key"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        odeint(decay, Y0, T, **kwargs)


@pytest.mark.parametrize(
    "y0, t, message",
    [
        (Y0, torch.tensor([[0.0, 1.0]]), "1-D"),
        (Y0, torch.tensor([]), "at least one time"),
        (Y0, torch.tensor(0.0), "1-D"),
        (Y0, torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
        (Y0, torch.tensor([0.0, 1.0, 1.0]), "strictly increasing"),
        (Y0, torch.tensor([0.0, float("nan")]), "NaN or infinite"),
        (torch.tensor([1, 2]), T, "floating-point"),
        ([1.0, 2.0], T, "floating-point"),
        (torch.zeros(0), T, "empty"),
    ],
)
def test_bad_state_or_times(y0, t, message):
    with pytest.raises(ValueError, match=message):
        odeint(decay, y0, t)


def test_derivative_of_wrong_shape_or_dtype():
    with pytest.raises(ValueError, match="shape and dtype"):
        odeint(lambda t, y: y.sum(), Y0, T)
    with pytest.raises(ValueError, match="shape and dtype"):
        odeint(lambda t, y: y.double(), Y0, T)


def test_non_finite_initial_state_is_a_solver_error():
    with pytest.raises(SolverError, match="y0 contains NaN or infinite") as caught:
        odeint(decay, torch.tensor([1.0, float("inf")]), T)
    assert caught.value.nonfinite


def test_step_budget_exhausted():
    with pytest.raises(SolverError, match=r"max_num_steps=20.*increase options\['max_num_steps'\]"):
        odeint(lambda t, y: torch.cos(50 * t) * y, Y0, torch.tensor([0.0, 10.0]), options={"max_num_steps": 20})


def test_blow_up_underflows_with_time_and_step_in_message():
    """y' = y^2, y(0) = 1 has y = 1 / (1 - t): the solve must stop near t = 1 with a SolverError."""
    with pytest.raises(SolverError) as info:
        odeint(
            lambda t, y: y**2,
            torch.tensor([1.0], dtype=torch.float64),
            torch.tensor([0.0, 2.0]),
            options={"max_num_steps": 100_000},
        )
    message = str(info.value)
    reached = float(message.split("t=")[1].split(" ")[0])
    assert 0.99 < reached < 1.01 and "last step size" in message
    assert info.value.nonfinite == message.startswith("the state or its derivative became non-finite")


def test_non_finite_derivative_is_reported():
    def nan_after_half(t, y):
        return y * (float("nan") if t > 0.5 else 1.0)

    with pytest.raises(SolverError, match="non-finite") as adaptive:
        odeint(nan_after_half, Y0, T)
    with pytest.raises(SolverError, match="non-finite") as fixed:
        odeint(nan_after_half, Y0, T, method="rk4", options={"step_size": 0.1})
    with pytest.raises(SolverError, match="initial time") as initial:
        odeint(lambda t, y: y * float("nan"), Y0, T)
    assert adaptive.value.nonfinite and fixed.value.nonfinite and initial.value.nonfinite


def test_solver_error_is_a_runtime_error():
    assert issubclass(SolverError, RuntimeError) and noderun.SolverError is SolverError
