"""The iteration meter: saved-tensor accounting that changes nothing and keeps nothing alive."""

import gc

import torch

from noderun.models.cnf import CNF
from noderun.models.ode_block import SolverSettings
from noderun.train.meter import SavedTensorBytes


def live_tensors() -> int:
    gc.collect()
    return sum(type(o) is torch.Tensor or type(o) is torch.nn.Parameter for o in gc.get_objects())


def test_metered_iterations_keep_no_tensor_alive():
    """A CNF solve under the adjoint builds graphs inside a no-grad forward (its trace): the meter's
    hooks must not tie those saved tensors into cycles that outlive the iteration."""
    model = CNF(2, SolverSettings("dopri5", 1e-5, 1e-5, grad="adjoint"), width=4, hyper_hidden=4)
    x, saved, counts = torch.randn(16, 2), SavedTensorBytes(), []
    for _ in range(3):
        with saved.active():
            loss = -model.log_prob(x).mean()
        loss.backward()
        del loss
        counts.append(live_tensors())
    assert counts[0] == counts[-1]


def test_metered_gradients_equal_unmetered_ones_through_a_double_backward():
    x = torch.randn(16, 2, dtype=torch.float64)
    gradients = []
    for metered in (False, True):
        torch.manual_seed(0)
        model = CNF(2, SolverSettings("dopri5", 1e-6, 1e-6, grad="backprop"), width=4, hyper_hidden=4).double()
        saved = SavedTensorBytes()
        with saved.active() if metered else torch.enable_grad():
            loss = -model.log_prob(x).mean()
        loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.equal(gradients[0], gradients[1])
