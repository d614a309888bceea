"""Per-sample step control: each sample's own step size, independent of the rest of the batch."""

import math

import pytest
import torch

import noderun
from noderun import odeint
from noderun.bench.cases import VanDerPol, VanDerPolInState
from noderun.solvers.stats import SolveStats

PER_SAMPLE = {"per_sample": True}


def van_der_pol(batch: int):
    return VanDerPol(torch.linspace(1.0, 10.0, batch).double()), torch.tensor([2.0, 0.0]).double().repeat(batch, 1)


def test_each_sample_solves_as_if_alone():
    func, y0 = van_der_pol(6)
    times = torch.linspace(0.0, 4.0, 5).double()
    stats = SolveStats()
    together = odeint(func, y0, times, rtol=1e-6, atol=1e-6, options=PER_SAMPLE, stats=stats)
    for i in range(6):
        alone_stats = SolveStats()
        alone = odeint(
            VanDerPol(func.mu[i : i + 1]),
            y0[i : i + 1],
            times,
            rtol=1e-6,
            atol=1e-6,
            options=PER_SAMPLE,
            stats=alone_stats,
        )
        torch.testing.assert_close(together[:, i : i + 1], alone, rtol=1e-12, atol=1e-12)
        assert stats.sample_steps[i] == alone_stats.sample_steps[0]
    assert stats.sample_steps[-1] > stats.sample_steps[0]  # the stiffer oscillator takes more steps
    assert stats.steps_accepted == max(stats.sample_steps)


def test_per_sample_agrees_with_a_tight_shared_solve():
    func, y0 = van_der_pol(8)
    times = torch.linspace(0.0, 3.0, 7).double()
    reference = odeint(func, y0, times, method="dopri8", rtol=1e-12, atol=1e-12)
    solution = odeint(func, y0, times, rtol=1e-9, atol=1e-9, options=PER_SAMPLE)
    torch.testing.assert_close(solution, reference, rtol=1e-6, atol=1e-6)
    assert torch.equal(solution[0], y0)


def test_time_is_one_per_sample():
    seen = []

    def decay(t, y):
        seen.append(t.shape)
        return -t[:, None] * y  # y(t) = y0 exp(-t²/2)

    y0 = torch.tensor([[1.0], [2.0], [-1.0]], dtype=torch.float64)
    y1 = odeint(decay, y0, torch.tensor([0.0, 2.0]), rtol=1e-10, atol=1e-10, options=PER_SAMPLE)[-1]
    torch.testing.assert_close(y1, y0 * math.exp(-2.0), rtol=1e-7, atol=1e-9)
    assert set(seen) == {torch.Size([3])}


def test_backward_in_time():
    func, y0 = van_der_pol(4)
    times = torch.tensor([1.0, 0.5, 0.0]).double()
    torch.testing.assert_close(
        odeint(func, y0, times, rtol=1e-9, atol=1e-9, options=PER_SAMPLE),
        odeint(func, y0, times, method="dopri8", rtol=1e-12, atol=1e-12),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("grad", ["backprop", "adjoint"])
def test_gradients_match_a_shared_step_solve(grad):
    torch.manual_seed(0)
    func = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    field = lambda t, y: func(y)  # noqa: E731
    y0 = torch.randn(5, 3, dtype=torch.float64)
    times = torch.tensor([0.0, 0.5, 1.0]).double()

    def gradients(options):
        func.zero_grad()
        odeint(
            field,
            y0,
            times,
            rtol=1e-10,
            atol=1e-10,
            options=options,
            grad=grad,
            adjoint_params=tuple(func.parameters()),
        ).pow(2).sum().backward()
        return [p.grad.clone() for p in func.parameters()]

    for ours, shared in zip(gradients(PER_SAMPLE), gradients(None)):
        torch.testing.assert_close(ours, shared, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"options": {"per_sample": 1}}, "must be True or False"),
        ({"options": PER_SAMPLE, "grad": "checkpoint"}, "not 'checkpoint'"),
        ({"adjoint_options": PER_SAMPLE, "grad": "adjoint"}, "adjoint's backward state is not batched"),
        ({"options": {"per_sample": True, "norm": "rms"}}, "drop options\\['norm'\\]"),
        ({"method": "rk4", "options": PER_SAMPLE}, "accepted keys: step_size"),
        (
            {"options": {"compact": True}},
            "drops finished samples from a per-sample solve: set options\\['per_sample'\\]",
        ),
        ({"options": {"per_sample": True, "compact": "yes"}}, "options\\['compact'\\] must be True or False"),
    ],
)
def test_bad_per_sample_settings(kwargs, message):
    func, y0 = van_der_pol(2)
    with pytest.raises(ValueError, match=message):
        odeint(func, y0, torch.tensor([0.0, 1.0]).double(), **kwargs)


class RowsAlone(VanDerPolInState):
    """``VanDerPolInState`` (nothing per sample outside the state, so a compacted solve may call it on any subset
    of the rows), recording how many rows each call saw."""

    def __init__(self):
        super().__init__()
        self.rows_seen = []

    def forward(self, t, y):
        self.rows_seen.append(len(y))
        return super().forward(t, y)


COMPACT = {"per_sample": True, "compact": True}


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_compacted_samples_solve_as_if_alone(direction):
    y0 = torch.cat([torch.tensor([[2.0, 0.0]]).repeat(6, 1), torch.linspace(1.0, 12.0, 6)[:, None]], 1).double()
    times = direction * torch.linspace(0.0, 4.0, 5).double()
    func, stats = RowsAlone(), SolveStats()
    together = odeint(func, y0, times, rtol=1e-6, atol=1e-6, options=COMPACT, stats=stats)
    assert min(func.rows_seen) < 6  # the batch was compacted
    for i in range(6):
        alone_stats = SolveStats()
        alone = odeint(RowsAlone(), y0[i : i + 1], times, rtol=1e-6, atol=1e-6, options=COMPACT, stats=alone_stats)
        torch.testing.assert_close(together[:, i : i + 1], alone, rtol=1e-12, atol=1e-12)
        assert stats.sample_steps[i] == alone_stats.sample_steps[0]
    assert stats.steps_accepted == max(stats.sample_steps)


def test_compacted_gradients_equal_the_whole_batch_solve():
    y0 = torch.cat([torch.tensor([[2.0, 0.0]]).repeat(4, 1), torch.tensor([[1.0], [2.0], [8.0], [16.0]])], 1).double()
    times = torch.linspace(0.0, 2.0, 3).double()

    def gradient(options):
        start = y0.clone().requires_grad_(True)
        odeint(RowsAlone(), start, times, rtol=1e-7, atol=1e-7, options=options, grad="backprop").pow(
            2
        ).sum().backward()
        return start.grad

    torch.testing.assert_close(gradient(COMPACT), gradient(PER_SAMPLE), rtol=1e-12, atol=1e-12)


def test_a_compacted_failure_names_the_sample_in_the_whole_batch():
    y0 = torch.cat([torch.tensor([[2.0, 0.0]]).repeat(4, 1), torch.tensor([[1.0], [1.0], [1.0], [1000.0]])], 1).double()
    func = RowsAlone()
    with pytest.raises(noderun.SolverError, match="max_num_steps=60 steps taken, reaching t=.* for sample 3 "):
        odeint(func, y0, torch.tensor([0.0, 1.0]).double(), options={**COMPACT, "max_num_steps": 60})
    assert func.rows_seen[-1] == 1


def test_zero_dim_state_is_refused():
    with pytest.raises(ValueError, match="needs a batch"):
        odeint(lambda t, y: -y, torch.tensor(1.0), torch.tensor([0.0, 1.0]), options=PER_SAMPLE)


def evaluation_times(options: dict, method: str = "dopri5") -> tuple[list[float], torch.Tensor, SolveStats]:
    """Every time ``func`` is evaluated at, the solution and the stats of a one-sample Van der Pol solve."""
    func, y0 = van_der_pol(1)
    seen = []

    def recording(t, y):
        seen.append(float(t.reshape(-1)[0]))
        return func(t, y)

    stats = SolveStats()
    ys = odeint(
        recording,
        y0,
        torch.tensor([0.0, 3.0]).double(),
        method=method,
        rtol=1e-6,
        atol=1e-6,
        options=options,
        stats=stats,
    )
    return seen, ys, stats


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"first_step": 1e-4},
        {"first_step": 0.5},
        {"safety": 0.7},
        {"ifactor": 2.0},
        {"dfactor": 0.5},
        {"beta": 0.04},
        {"beta": 0.1, "safety": 0.8, "ifactor": 4.0, "dfactor": 0.3},
    ],
)
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_every_option_means_the_same_per_sample(options, method):
    """A one-sample batch under per-sample control takes the shared path's steps: the same evaluation
    times (the first step included), counts and solution."""
    shared_times, shared, shared_stats = evaluation_times(options, method)
    sample_times, per_sample, sample_stats = evaluation_times({**options, "per_sample": True}, method)
    assert len(sample_times) == len(shared_times)
    torch.testing.assert_close(torch.tensor(sample_times), torch.tensor(shared_times), rtol=1e-12, atol=1e-14)
    if "first_step" in options:
        assert sample_times[1] == pytest.approx(options["first_step"] * noderun.METHODS[method].c[1], rel=1e-12)
    assert (sample_stats.steps_accepted, sample_stats.steps_rejected, sample_stats.nfe_forward) == (
        shared_stats.steps_accepted,
        shared_stats.steps_rejected,
        shared_stats.nfe_forward,
    )
    torch.testing.assert_close(per_sample, shared, rtol=1e-10, atol=1e-12)


def test_the_step_budget_is_the_same_per_sample():
    for options in ({"max_num_steps": 12}, {"max_num_steps": 12, "per_sample": True}):
        with pytest.raises(noderun.SolverError, match=r"max_num_steps=12 steps taken, reaching t=.*t_final 3.0"):
            evaluation_times(options)
