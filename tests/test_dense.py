"""``odeint_dense``: an adaptive solve kept as a function of time."""

import math

import pytest
import torch

from noderun import SolveStats, odeint_dense

A = torch.tensor([[-0.3, 2.0], [-2.0, -0.3]], dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)


def exact(t):
    return torch.linalg.matrix_exp(A * t) @ Y0


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
@pytest.mark.parametrize("t0, t1", [(0.0, 3.0), (3.0, 0.0)])
def test_dense_solution_matches_the_exact_one_everywhere(method, t0, t1):
    y_start = exact(t0)
    stats = SolveStats()
    solution = odeint_dense(lambda t, y: A @ y, y_start, t0, t1, rtol=1e-9, atol=1e-9, method=method, stats=stats)
    nfe_solve = stats.nfe_forward
    queries = torch.linspace(min(t0, t1), max(t0, t1), 37, dtype=torch.float64)
    values = solution(queries)
    assert values.shape == (37, 2)
    expected = torch.stack([exact(float(t)) for t in queries])
    assert (values - expected).abs().max() < 1e-6
    assert stats.nfe_forward > nfe_solve  # the steps holding the queries were recomputed for their stages
    assert torch.equal(solution(t1), solution.y1) and torch.allclose(solution(t0), y_start)


def test_gradients_flow_through_the_dense_solution():
    y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    solution = odeint_dense(lambda t, y: -y, y0, 0.0, 2.0, rtol=1e-10, atol=1e-10)
    value = solution(torch.tensor(1.3, dtype=torch.float64))
    (grad,) = torch.autograd.grad(value.sum(), y0)
    assert float(grad) == pytest.approx(math.exp(-1.3), rel=1e-7)


def test_what_odeint_dense_refuses():
    solution = odeint_dense(lambda t, y: -y, torch.ones(1), 0.0, 1.0)
    with pytest.raises(ValueError, match="outside the solved interval"):
        solution(1.5)
    with pytest.raises(ValueError, match="adaptive Runge–Kutta method"):
        odeint_dense(lambda t, y: -y, torch.ones(1), 0.0, 1.0, method="rk4")
    with pytest.raises(ValueError, match="t0 != t1"):
        odeint_dense(lambda t, y: -y, torch.ones(1), 1.0, 1.0)


def test_the_end_time_is_inside_whatever_the_rounding_and_jump_t_is_kept():
    import random

    rng = random.Random(0)
    for _ in range(50):
        t0, t1 = rng.uniform(-2, 2), rng.uniform(-2, 2)
        solution = odeint_dense(lambda t, y: -y, torch.ones(1, dtype=torch.float64), t0, t1)
        assert torch.equal(solution(t1), solution.y1)

    def step(t, y):
        return (t > 0.5).to(y.dtype) * torch.ones_like(y)

    solution = odeint_dense(step, torch.zeros(1, dtype=torch.float64), 0.0, 1.0, options={"jump_t": [0.5]})
    assert float(solution(0.45)) == 0.0 and float(solution(0.9)) == pytest.approx(0.4, abs=1e-9)
