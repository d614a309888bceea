"""``options={"compile": True}``: the compiled step gives the eager step's solution, evaluations and
gradients; settings that cannot be compiled are refused up front. Compilation takes seconds per
(method, shape, grad mode), so the default run compiles dopri5 once; the rest is marked slow."""

import pytest
import torch
from torch import nn

from noderun.odeint import odeint
from noderun.solvers import fused
from noderun.solvers.stats import SolveStats

TIMES = torch.tensor([0.0, 0.3, 0.7, 1.5], dtype=torch.float64)  # outputs inside steps: dense output


@pytest.fixture(autouse=True, scope="module")
def fresh_compile_cache():
    """This module's compiled variants do not count against those of later tests."""
    yield
    torch._dynamo.reset()


def field() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = field()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


def solve(func, y0, compile_step: bool, stats: SolveStats, **kwargs):
    return odeint(func, y0, TIMES, rtol=1e-7, atol=1e-9, options={"compile": compile_step}, stats=stats, **kwargs)


def y0_batch() -> torch.Tensor:
    return torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)


def test_compiled_forward_matches_eager():
    func = Field()
    eager_stats, compiled_stats = SolveStats(), SolveStats()
    with torch.no_grad():
        eager = solve(func, y0_batch(), False, eager_stats)
        compiled = solve(func, y0_batch(), True, compiled_stats)
        again = solve(func, y0_batch() * 0.5, True, SolveStats())  # same shape: no new compilation
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-10)
    assert compiled_stats == eager_stats and eager_stats.steps_accepted > 3
    assert again.shape == eager.shape and not torch.allclose(again, eager)


def gradients(func: nn.Module, compile_step: bool, **kwargs) -> list[torch.Tensor]:
    """The gradients of the sum of squares of every output, with respect to y0 and the parameters."""
    y0 = y0_batch().requires_grad_(True)
    func.zero_grad()
    solve(func, y0, compile_step, SolveStats(), **kwargs).pow(2).sum().backward()
    return [y0.grad.clone()] + [p.grad.clone() for p in func.parameters()]


def test_adjoint_forward_compiled_backward_eager():
    func = Field()
    for eager, compiled in zip(gradients(func, False, grad="adjoint"), gradients(func, True, grad="adjoint")):
        torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "options, adjoint_options, match",
    [
        ({"compile": "yes"}, None, r"options\['compile'\] must be True or False"),
        ({"compile": True, "per_sample": True}, None, "shared step size"),
        ({}, {"compile": True}, "compile applies to the forward solve"),
    ],
)
def test_settings_that_cannot_compile_are_refused(options, adjoint_options, match):
    with pytest.raises(ValueError, match=match):
        odeint(Field(), y0_batch(), TIMES, options=options, grad="adjoint", adjoint_options=adjoint_options)


@pytest.mark.slow
def test_compiled_backprop_gradient_matches_eager():
    func = Field()
    for eager, compiled in zip(gradients(func, False), gradients(func, True)):
        torch.testing.assert_close(compiled, eager, rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_compiled_fixed_step_matches_eager():
    func = Field()
    stats = [SolveStats(), SolveStats()]
    with torch.no_grad():
        eager, compiled = (
            odeint(func, y0_batch(), TIMES, method="rk4", options={"step_size": 0.1, "compile": c}, stats=s)
            for c, s in zip((False, True), stats)
        )
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-12)
    assert stats[0] == stats[1]


def test_a_function_that_cannot_be_traced_is_named():
    def calls_autograd(t, y):  # as a CNF's exact trace does
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            return torch.autograd.grad(y.pow(3).sum(), y)[0]

    with pytest.raises(ValueError, match=r"options\['compile'\]: torch.compile cannot trace func"):
        odeint(calls_autograd, y0_batch(), TIMES, options={"compile": True})


class CountingField(Field):
    """A call counter on the module: a Python attribute that changes on every call, so every step is a
    new variant for torch.compile."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return super().forward(t, y)


def test_when_the_variants_run_out_the_solve_continues_eagerly(monkeypatch):
    torch._dynamo.reset()  # no variants yet: the first step compiles, the second needs noderun's limit
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    monkeypatch.setattr(fused, "MAX_VARIANTS", 2)
    func, stats = CountingField(), [SolveStats(), SolveStats()]
    with torch.no_grad():
        eager = solve(func, y0_batch(), False, stats[0])
        with pytest.warns(RuntimeWarning, match="variants of the step are compiled already"):
            compiled = solve(func, y0_batch(), True, stats[1])
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-10)
    assert stats[0] == stats[1] and func.calls == 2 * stats[0].nfe_forward
