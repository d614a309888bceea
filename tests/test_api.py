"""The public API's contract: shapes, dtypes, time direction, fixed grids, stats, torchdiffeq-style calls."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import noderun
from noderun import odeint, odeint_adjoint


def decay(t, y):
    return -y


@pytest.mark.parametrize("shape", [(3,), (4, 2), (2, 3, 5, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_are_kept(shape, dtype):
    seen = {}

    def func(t, y):
        seen["t"] = t
        return -y

    y0 = torch.randn(shape, dtype=dtype)
    t = torch.linspace(0, 1, 4)
    ys = odeint(func, y0, t, rtol=1e-5, atol=1e-6)
    assert ys.shape == (4, *shape) and ys.dtype == dtype
    assert seen["t"].dtype == dtype and seen["t"].dim() == 0
    expected = y0 * torch.exp(-t.to(dtype)).view(-1, *[1] * len(shape))
    assert torch.allclose(ys, expected, rtol=1e-4, atol=1e-5)


# 4,000 Newton steps each: one implicit method by default, the others with -m slow (test_implicit checks them all)
BACK_AND_FORTH = [
    pytest.param(name, marks=pytest.mark.slow) if name in noderun.IMPLICIT and name != "implicit_euler" else name
    for name in noderun.METHODS
]


@pytest.mark.parametrize("method", BACK_AND_FORTH)
def test_integrating_backwards_returns_to_the_start(method):
    func = lambda t, y: torch.stack([y[1], -torch.sin(y[0])])  # noqa: E731  (pendulum)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    options = (
        {}
        if method == "scipy_solver"
        else {"max_num_steps": 100_000}
        if noderun.METHODS[method].adaptive
        else {"step_size": 0.001}
    )
    kwargs = {"method": method, "rtol": 1e-8, "atol": 1e-8, "options": options}
    forward = odeint(func, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), **kwargs)
    back = odeint(func, forward[-1], torch.tensor([2.0, 0.0], dtype=torch.float64), **kwargs)
    assert torch.allclose(back[-1], y0, atol=0.05 if noderun.METHODS[method].order == 1 else 1e-4)


def test_fixed_step_lands_on_every_output_time():
    times = torch.tensor([0.0, 0.25, 1.0, 1.1], dtype=torch.float64)
    stats = noderun.SolveStats()
    ys = odeint(
        decay, torch.ones(1, dtype=torch.float64), times, method="euler", options={"step_size": 0.3}, stats=stats
    )
    # ceil(0.25/0.3) + ceil(0.75/0.3) + ceil(0.1/0.3) = 1 + 3 + 1 equal steps
    assert stats.steps_accepted == 5 and stats.nfe_forward == 5
    assert ys[1].item() == pytest.approx(1 - 0.25)
    default = noderun.SolveStats()
    odeint(decay, torch.ones(1), times, method="rk4", stats=default)
    assert default.steps_accepted == 3


def test_stats_accumulate_and_reset():
    stats = noderun.SolveStats()
    odeint(decay, torch.ones(2), torch.tensor([0.0, 1.0]), stats=stats)
    once = stats.nfe_forward
    odeint(decay, torch.ones(2), torch.tensor([0.0, 1.0]), stats=stats)
    assert once > 0 and stats.nfe_forward == 2 * once and stats.steps_accepted > 0
    stats.reset()
    assert stats == noderun.SolveStats()


def test_torchdiffeq_style_calls():
    class Func(nn.Module):
        def __init__(self):
            super().__init__()
            self.rate = nn.Parameter(torch.tensor(0.5))

        def forward(self, t, y):
            return -self.rate * y

    func, y0, t = Func(), torch.ones(3), torch.linspace(0, 1, 5)
    ys = odeint(func, y0, t, rtol=1e-6, atol=1e-8, method="dopri5", options=dict(first_step=0.1))
    ys_adj = odeint_adjoint(
        func,
        y0,
        t,
        rtol=1e-6,
        atol=1e-8,
        method="dopri5",
        adjoint_rtol=1e-6,
        adjoint_atol=1e-8,
        adjoint_options=dict(norm="seminorm"),
    )
    assert torch.allclose(ys, ys_adj)
    ys_adj[-1].sum().backward()
    assert func.rate.grad.item() == pytest.approx(-3 * torch.exp(torch.tensor(-0.5)).item(), rel=1e-4)
    with pytest.raises(TypeError, match="always uses grad='adjoint'"):
        odeint_adjoint(func, y0, t, grad="backprop")


def test_custom_norm_and_list_times():
    calls = []

    def max_norm(x):
        calls.append(1)
        return x.abs().max()

    ys = odeint(decay, torch.ones(2), [0.0, 0.5, 1.0], options={"norm": max_norm})
    assert calls and ys.shape == (3, 2)


def test_console_script_lists_methods():
    result = subprocess.run(
        [sys.executable, "-m", "noderun.cli", "methods"], capture_output=True, text=True, check=True
    )
    assert "dopri5" in result.stdout and "heun3" in result.stdout and "heun2 (= heun)" in result.stdout
    assert "radauIIA5" in result.stdout


def test_an_alias_solves_as_its_method():
    """``heun2`` (torchdiffeq's name) is ``heun``: the same steps and solution."""
    y0, t = torch.tensor([1.0, 0.5], dtype=torch.float64), torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    ys = {}
    for name in ("heun", "heun2"):
        stats = noderun.SolveStats()
        ys[name] = odeint(
            lambda t, y: torch.stack([y[1], -y[0]]), y0, t, method=name, options={"step_size": 0.1}, stats=stats
        )
        assert stats.nfe_forward == 2 * 12
    assert torch.equal(ys["heun"], ys["heun2"])


def test_a_full_settings_cache_still_keeps_the_newest_setting():
    """Once as many settings as the cache holds were parsed, a new one is still parsed once (the oldest goes)."""
    from noderun.solvers import settings as module

    for i in range(module._MAX_PARSED + 3):
        module.parsed("dopri5", 1e-6, 1e-6, {"first_step": 1e-3 * (i + 1)}, "backprop")
    assert len(module._PARSED) <= module._MAX_PARSED
    newest = module.parsed("dopri5", 1e-6, 1e-6, {"first_step": 7.0}, "backprop")
    assert module.parsed("dopri5", 1e-6, 1e-6, {"first_step": 7.0}, "backprop") is newest
    for i in range(module._MAX_PARSED + 3):  # a setting used all along is kept, however many others come
        module.parsed("dopri5", 1e-6, 1e-6, {"first_step": 2e-3 * (i + 1)}, "backprop")
        assert module.parsed("dopri5", 1e-6, 1e-6, {"first_step": 7.0}, "backprop") is newest


def test_repeated_settings_are_parsed_once_and_never_confused():
    """odeint parses a setting of plain values once; True is not 1, and a caller's dict changed later
    changes nothing already parsed."""
    from noderun.solvers.settings import parsed

    options = {"first_step": 0.1}
    first = parsed("dopri5", 1e-6, 1e-6, options, "backprop")
    assert parsed("dopri5", 1e-6, 1e-6, {"first_step": 0.1}, "backprop") is first
    options["first_step"] = 0.5
    assert first.forward.first_step == 0.1 and first.options == {"first_step": 0.1}
    assert parsed("dopri5", 1e-6, 1e-6, options, "backprop").forward.first_step == 0.5
    assert parsed("dopri5", 1e-6, 1e-6, {"per_sample": True}, "backprop").forward.per_sample is True
    with pytest.raises(ValueError, match="must be True or False"):
        parsed("dopri5", 1e-6, 1e-6, {"per_sample": 1}, "backprop")
    tolerance = torch.tensor(1e-6)
    assert parsed("dopri5", tolerance, 1e-6, None, "backprop") is not parsed(
        "dopri5", tolerance, 1e-6, None, "backprop"
    )
