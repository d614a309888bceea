"""Tuple states: a solve of ``(y, z)`` against the same solve of the concatenated tensor ``[y, z]`` — values,
evaluations and the gradients of every mode — the default and custom norms, and refused tuples."""

import pytest
import torch
from torch import nn

import noderun
from noderun.errors import SolverError
from noderun.models.cnf import CNFDynamics, PlanarField
from noderun.solvers.control import channel_norm

D = torch.float64
SHAPES = ((3,), (2, 2))  # y and z
SIZES = (3, 4)


class Coupled(nn.Module):
    """``dy/dt = tanh(A y + B vec(z) + t)``, ``dz/dt = -z ⊙ y[:2] + C y`` (``z`` of shape (2, 2)); ``dz/dt`` is
    computed in ``z``'s own dtype."""

    def __init__(self, z_dtype=D):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Parameter(torch.randn(3, 3, dtype=D) * 0.5)
        self.b = nn.Parameter(torch.randn(3, 4, dtype=D) * 0.5)
        self.c = nn.Parameter(torch.randn(2, 3, dtype=z_dtype) * 0.5)

    def forward(self, t, state):
        y, z = state
        dy = torch.tanh(self.a @ y + self.b @ z.reshape(-1).to(y.dtype) + t)
        dz = -z * y[:2].to(z.dtype) + (self.c @ y.to(z.dtype))[:, None]
        return dy, dz


class Concatenated(nn.Module):
    """The same dynamics on one tensor ``[y, vec(z)]`` of ``y``'s dtype."""

    def __init__(self, func: Coupled, z_dtype=D):
        super().__init__()
        self.func, self.z_dtype = func, z_dtype

    def forward(self, t, x):
        dy, dz = self.func(t, (x[:3], x[3:].reshape(2, 2).to(self.z_dtype)))
        return torch.cat([dy, dz.reshape(-1).to(x.dtype)])


def start(z_dtype=D, requires_grad=False):
    torch.manual_seed(1)
    y = torch.randn(3, dtype=D).requires_grad_(requires_grad)
    z = torch.randn(2, 2, dtype=D).to(z_dtype).requires_grad_(requires_grad)
    return y, z


def concatenate(y, z):
    return torch.cat([y, z.reshape(-1).to(y.dtype)])


def split(ys, z_dtype=D):
    return ys[:, :3], ys[:, 3:].reshape(-1, 2, 2).to(z_dtype)


def settings(method):
    if not noderun.METHODS[method].adaptive:
        return {"method": method, "options": {"step_size": 0.1}}
    return {"method": method, "rtol": 1e-6, "atol": 1e-8}


def concatenated_settings(method, grad="backprop"):
    """``settings(method)`` for the concatenated solve with the tuple's norms: the largest RMS over
    ``y`` and ``z`` forward, and over ``y, z, a_y, a_z`` and the parameters backward."""
    kwargs = settings(method)
    if method in noderun.ADAPTIVE or method in noderun.STIFF:
        kwargs["options"] = {"norm": channel_norm(SIZES)}
        if grad == "adjoint":
            kwargs["adjoint_options"] = {"norm": concatenated_adjoint_norm}
    return kwargs


def concatenated_adjoint_norm(state):
    """The backward norm, given ``(t, y, a, *dL/dθ)``: the largest RMS over ``y``'s and ``a``'s parts and the
    parameter gradients."""
    _, y, a, *grads = state
    g = torch.cat([x.reshape(-1) for x in grads])
    return channel_norm((*SIZES, *SIZES, g.numel()))(torch.cat([y, a, g]))


T = torch.linspace(0.0, 1.5, 4, dtype=D)


@pytest.mark.parametrize("method", list(noderun.METHODS))
def test_tuple_solve_equals_the_concatenated_solve(method):
    func = Coupled()
    y, z = start()
    tuple_stats, flat_stats = noderun.SolveStats(), noderun.SolveStats()
    ys, zs = noderun.odeint(func, (y, z), T, stats=tuple_stats, **settings(method))
    reference = noderun.odeint(
        Concatenated(func), concatenate(y, z), T, stats=flat_stats, **concatenated_settings(method)
    )
    assert ys.shape == (len(T), 3) and zs.shape == (len(T), 2, 2)
    expected_y, expected_z = split(reference)
    torch.testing.assert_close(ys, expected_y, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(zs, expected_z, rtol=1e-13, atol=1e-13)
    assert tuple_stats.nfe_forward == flat_stats.nfe_forward
    assert tuple_stats.steps_accepted == flat_stats.steps_accepted


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_each_tensor_keeps_its_dtype(method):
    func = Coupled(z_dtype=torch.float32)
    y, z = start(z_dtype=torch.float32)
    tuple_stats, flat_stats = noderun.SolveStats(), noderun.SolveStats()
    ys, zs = noderun.odeint(func, [y, z], T, stats=tuple_stats, **settings(method))  # a list is taken too
    reference = noderun.odeint(
        Concatenated(func, torch.float32), concatenate(y, z), T, stats=flat_stats, **concatenated_settings(method)
    )
    assert (ys.dtype, zs.dtype) == (D, torch.float32)
    expected_y, expected_z = split(reference, torch.float32)
    torch.testing.assert_close(ys, expected_y, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(zs, expected_z, rtol=0, atol=0)
    assert tuple_stats.nfe_forward == flat_stats.nfe_forward


def tuple_gradients(func, grad, method, t=T, **kwargs):
    y, z = start(requires_grad=True)
    stats = noderun.SolveStats()
    ys, zs = noderun.odeint(func, (y, z), t, grad=grad, stats=stats, **settings(method), **kwargs)
    inputs = [y, z, *kwargs.get("adjoint_params", func.parameters() if isinstance(func, nn.Module) else ())]
    return torch.autograd.grad(loss(ys, zs), inputs + ([t] if t.requires_grad else [])), stats


def flat_gradients(func, grad, method, t=T, **kwargs):
    y, z = start(requires_grad=True)
    stats = noderun.SolveStats()
    ys = noderun.odeint(
        func, concatenate(y, z), t, grad=grad, stats=stats, **concatenated_settings(method, grad), **kwargs
    )
    inputs = [y, z, *kwargs.get("adjoint_params", func.parameters() if isinstance(func, nn.Module) else ())]
    return torch.autograd.grad(loss(*split(ys)), inputs + ([t] if t.requires_grad else [])), stats


def loss(ys, zs):
    return (ys**2).sum() + (zs[1:] * zs[1:].detach().sign()).sum() + zs[-1, 0, 1] * ys[-1, 2]


def assert_same_gradients(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("grad", noderun.GRAD_MODES)
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_gradients_equal_the_concatenated_solves(grad, method):
    func = Coupled()
    got, tuple_stats = tuple_gradients(func, grad, method)
    expected, flat_stats = flat_gradients(Concatenated(func), grad, method)
    assert_same_gradients(got, expected)
    assert (tuple_stats.nfe_forward, tuple_stats.nfe_backward) == (flat_stats.nfe_forward, flat_stats.nfe_backward)
    assert any(g.abs().max() > 1e-3 for g in got[2:])  # the parameters' gradients are not trivially zero


@pytest.mark.parametrize("grad", ["adjoint", "checkpoint"])
def test_adjoint_params_of_a_plain_function(grad):
    module = Coupled()
    weights = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def func(t, state):
        y, z = state
        a, b, c = weights
        return torch.tanh(a @ y + b @ z.reshape(-1) + t), -z * y[:2] + (c @ y)[:, None]

    def flat(t, x):
        return torch.cat([part.reshape(-1) for part in func(t, (x[:3], x[3:].reshape(2, 2)))])

    got, tuple_stats = tuple_gradients(func, grad, "dopri5", adjoint_params=weights)
    expected, flat_stats = flat_gradients(flat, grad, "dopri5", adjoint_params=weights)
    assert_same_gradients(got, expected)
    assert tuple_stats.nfe_backward == flat_stats.nfe_backward
    # the Module's own parameters give the same gradients: adjoint_params default to func's, not the wrapper's
    module_grads, _ = tuple_gradients(module, grad, "dopri5")
    assert_same_gradients(module_grads, got)


def test_a_plain_function_needs_adjoint_params():
    y, z = start()
    with pytest.raises(ValueError, match="adjoint_params"):
        noderun.odeint(lambda t, s: s, (y, z), T, grad="adjoint")


@pytest.mark.parametrize("grad", ["backprop", "adjoint"])
def test_time_gradients_of_a_tuple_state(grad):
    func = Coupled()
    t = T.clone().requires_grad_(True)
    got, _ = tuple_gradients(func, grad, "dopri5", t=t)
    expected, _ = flat_gradients(Concatenated(func), grad, "dopri5", t=t)
    assert_same_gradients(got, expected)
    assert got[-1].abs().max() > 1e-3


def test_default_norm_is_the_largest_rms_over_the_tensors():
    """The tuple's steps are the concatenated solve's with ``channel_norm(sizes)``, not with the plain RMS
    (which takes other steps on this problem)."""
    func = Coupled()
    y, z = start()
    stats = {name: noderun.SolveStats() for name in ("tuple", "channels", "rms", "tuple_rms")}
    kwargs = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-9}
    ys, zs = noderun.odeint(func, (y, z), T, stats=stats["tuple"], **kwargs)
    by_channel = noderun.odeint(
        Concatenated(func),
        concatenate(y, z),
        T,
        stats=stats["channels"],
        options={"norm": channel_norm(SIZES)},
        **kwargs,
    )
    by_rms = noderun.odeint(Concatenated(func), concatenate(y, z), T, stats=stats["rms"], **kwargs)
    noderun.odeint(func, (y, z), T, stats=stats["tuple_rms"], options={"norm": "rms"}, **kwargs)
    assert stats["tuple"].nfe_forward == stats["channels"].nfe_forward
    assert stats["rms"].nfe_forward != stats["channels"].nfe_forward  # the two norms really differ here
    assert stats["tuple_rms"].nfe_forward == stats["rms"].nfe_forward  # norm="rms": over all the elements
    torch.testing.assert_close(torch.cat([ys, zs.flatten(1)], dim=1), by_channel, rtol=1e-13, atol=1e-13)
    assert not torch.allclose(by_rms, by_channel, rtol=0, atol=1e-14)


def test_custom_norm_receives_the_tuple():
    func = Coupled(z_dtype=torch.float32)
    y, z = start(z_dtype=torch.float32)
    seen = []

    def norm(state):
        seen.append(state)
        first, second = state
        return torch.maximum(first.abs().max(), second.abs().max().to(first.dtype))

    def flat_norm(x):
        return torch.maximum(x[:3].abs().max(), x[3:].to(torch.float32).abs().max().to(x.dtype))

    tuple_stats, flat_stats = noderun.SolveStats(), noderun.SolveStats()
    ys, zs = noderun.odeint(func, (y, z), T, options={"norm": norm}, stats=tuple_stats)
    reference = noderun.odeint(
        Concatenated(func, torch.float32), concatenate(y, z), T, options={"norm": flat_norm}, stats=flat_stats
    )
    assert seen and all(isinstance(state, tuple) and len(state) == 2 for state in seen)
    assert {(s[0].shape, s[0].dtype, s[1].shape, s[1].dtype) for s in seen} == {((3,), D, (2, 2), torch.float32)}
    assert tuple_stats.nfe_forward == flat_stats.nfe_forward
    torch.testing.assert_close(ys, split(reference)[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("grad", ["backprop", "adjoint"])
def test_per_sample_flattens_batch_first(grad):
    """Each sample's row is ``[y_b, z_b]``, as in the concatenated ``(B, 3)`` state; its error is the RMS over the
    row."""
    torch.manual_seed(2)
    mu = torch.linspace(0.5, 4.0, 5, dtype=D)
    x0, v0 = torch.randn(5, 2, dtype=D), torch.randn(5, dtype=D)

    def oscillator(t, state):
        x, v = state
        return torch.stack([x[:, 1], v], dim=1), mu * (1 - x[:, 0] ** 2) * v - x[:, 0] - x[:, 1] * t

    def flat(t, state):
        dx, dv = oscillator(t, (state[:, :2], state[:, 2]))
        return torch.cat([dx, dv[:, None]], dim=1)

    kwargs = {
        "method": "dopri5",
        "rtol": 1e-6,
        "atol": 1e-8,
        "options": {"per_sample": True},
        "grad": grad,
        "adjoint_params": (),
    }
    tuple_stats, flat_stats = noderun.SolveStats(), noderun.SolveStats()
    x, v = x0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
    xs, vs = noderun.odeint(oscillator, (x, v), T, stats=tuple_stats, **kwargs)
    got = torch.autograd.grad((xs**2).sum() + vs[-1].sum(), (x, v))
    x, v = x0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
    states = noderun.odeint(flat, torch.cat([x, v[:, None]], dim=1), T, stats=flat_stats, **kwargs)
    expected = torch.autograd.grad((states[..., :2] ** 2).sum() + states[-1, :, 2].sum(), (x, v))
    assert xs.shape == (len(T), 5, 2) and vs.shape == (len(T), 5)
    torch.testing.assert_close(torch.cat([xs, vs[..., None]], dim=2), states, rtol=1e-13, atol=1e-13)
    assert tuple_stats.sample_steps == flat_stats.sample_steps
    assert len(set(tuple_stats.sample_steps)) > 1  # the samples really step apart
    assert (tuple_stats.nfe_forward, tuple_stats.nfe_backward) == (flat_stats.nfe_forward, flat_stats.nfe_backward)
    assert_same_gradients(got, expected)


@pytest.mark.parametrize(
    "state, message",
    [
        ((), "empty tuple"),
        ((torch.zeros(2), "z"), r"y0\[1\] must be a floating-point tensor .* got str"),
        (
            (torch.zeros(2), torch.zeros(2, dtype=torch.int64)),
            r"y0\[1\] must be a floating-point tensor .* got torch.int64",
        ),
        ((torch.zeros(0), torch.zeros(2)), r"y0\[0\] is empty"),
        ((torch.zeros(2), (torch.zeros(2),)), r"y0\[1\] must be a floating-point tensor .* got tuple"),
    ],
)
def test_bad_tuples_are_refused(state, message):
    with pytest.raises(ValueError, match=message):
        noderun.odeint(lambda t, s: s, state, T)


def test_a_non_finite_tensor_is_named():
    with pytest.raises(SolverError, match=r"y0\[1\] contains NaN or infinite"):
        noderun.odeint(lambda t, s: s, (torch.zeros(2), torch.tensor([1.0, float("nan")])), T)


@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda y, z: (y,), r"func must return a tuple of 2 tensors .* got a tuple of 1"),
        (lambda y, z: torch.cat([y, z.reshape(-1)]), r"func must return a tuple of 2 tensors .* got Tensor"),
        (lambda y, z: (y, z.reshape(-1)), r"func returned \(4,\) for state element 1, expected shape \(2, 2\)"),
        (lambda y, z: (y, 1.0), r"func returned float for state element 1"),
    ],
)
def test_a_wrong_derivative_is_refused(returned, message):
    y, z = start()
    with pytest.raises(ValueError, match=message):
        noderun.odeint(lambda t, state: returned(*state), (y, z), T, method="rk4")


@pytest.mark.parametrize(
    "state, message",
    [
        ((torch.zeros(3, 2), torch.zeros(4)), "one batch size"),
        ((torch.zeros(3, 2), torch.tensor(1.0)), "batch first"),
    ],
)
def test_per_sample_needs_one_batch_size(state, message):
    with pytest.raises(ValueError, match=message):
        noderun.odeint(lambda t, s: s, state, T, options={"per_sample": True})


@pytest.mark.parametrize("delta_shape", [(6,), (6, 1)])
def test_cnf_dynamics_take_the_log_density_change_in_its_shape(delta_shape):
    torch.manual_seed(3)
    dynamics = CNFDynamics(PlanarField(2, width=4, hyper_hidden=3)).double()
    z, delta = torch.randn(6, 2, dtype=D), torch.zeros(delta_shape, dtype=D)
    t = torch.tensor(0.2, dtype=D)
    dz, d_delta = dynamics(t, (z, delta))
    assert d_delta.shape == delta_shape
    z_ = z.clone().requires_grad_(True)
    jacobian_trace = sum(torch.autograd.grad(dynamics.field(t, z_)[:, i].sum(), z_)[0][:, i] for i in range(2))
    torch.testing.assert_close(d_delta.reshape(-1), -jacobian_trace)
    torch.testing.assert_close(dz, dynamics.field(t, z))


@pytest.mark.parametrize("grad", ["backprop", "adjoint", "checkpoint"])
def test_a_zero_dimensional_tensor_in_a_tuple(grad):
    """A scalar among the tuple's tensors keeps its shape ``()`` (its solution ``(len(t),)``), as in the same
    solve on the concatenated state."""
    scale = torch.tensor([0.5, -1.0], requires_grad=True)

    def tuple_field(t, state):
        a, b = state
        return -a * 0.3, scale * b + a

    def flat_field(t, y):
        return torch.cat([-y[:1] * 0.3, scale * y[1:] + y[:1]])

    a0, b0 = torch.tensor(1.0, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    a, b = noderun.odeint(
        tuple_field, (a0, b0), t, method="rk4", options={"step_size": 0.1}, grad=grad, adjoint_params=(scale,)
    )
    assert a.shape == (4,) and b.shape == (4, 2)
    (a.sum() + b.pow(2).sum()).backward()
    tuple_grad, scale.grad = scale.grad.clone(), None
    flat = noderun.odeint(
        flat_field,
        torch.cat([a0[None], b0]),
        t,
        method="rk4",
        options={"step_size": 0.1},
        grad=grad,
        adjoint_params=(scale,),
    )
    torch.testing.assert_close(torch.cat([a[:, None], b], dim=1), flat)
    (flat[:, 0].sum() + flat[:, 1:].pow(2).sum()).backward()
    torch.testing.assert_close(tuple_grad, scale.grad)


def test_a_derivative_of_the_wrong_dtype_is_refused():
    state = (torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float32))
    with pytest.raises(
        ValueError, match="torch.float64 on cpu for state element 1, expected its state's torch.float32"
    ):
        noderun.odeint(lambda t, s: (-s[0], -s[1].double()), state, torch.tensor([0.0, 1.0]))
