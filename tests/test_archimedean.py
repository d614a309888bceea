"""dataset.kind=archimedean: the authors' public spiral generator (torchdiffeq examples/latent_ode.py),
its window and extrapolation layout, its noise, and the extrapolation RMSE on it."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import compose_config
from noderun.data.spirals import ARCHIMEDEAN_TOTAL, Spirals, archimedean_curves
from noderun.tasks.timeseries import TimeSeries
from noderun.train.validate import ConfigError, validate_config


def loaded(n_spirals=40, n_obs=30, seed=0, **kwargs):
    spirals = Spirals(kind="archimedean", n_spirals=n_spirals, n_obs=n_obs, seed=seed, **kwargs)
    return spirals, spirals.load()


def everything(data):
    """All trajectories in generation order (the test split comes first), as stacked tensors."""
    parts = [data.test, data.train]
    return {
        key: torch.cat([torch.stack([part[i][key] for i in range(len(part))]) for part in parts])
        for key in ("values", "mask", "truth")
    }


def test_shapes_times_and_masks():
    _, data = loaded(n_obs=30)
    assert (len(data.train), len(data.test)) == (32, 8) and data.info == {"obs_dim": 2}
    sample = data.train[0]
    assert sample["times"].shape == (200,) and sample["values"].shape == (100, 2)
    assert sample["mask"].shape == (100,) and sample["truth"].shape == (200, 2)
    step = 6 * math.pi / 999  # theta - theta_start on the example's 1,000-point grid over [0, 6 pi]
    assert sample["times"][0] == 0.0 and torch.allclose(sample["times"], torch.arange(200) * step)
    rows = everything(data)
    assert (rows["mask"].sum(1) == 30).all() and (rows["values"][~rows["mask"]] == 0).all()


def test_curves_match_the_public_example():
    theta, ccw, cw = archimedean_curves()
    assert theta.shape == (1000,) and theta[-1] == pytest.approx(6 * math.pi)
    i = 700  # counter-clockwise: r = 0.3 theta about (+5, 0), angle theta
    r = 0.3 * theta[i]
    assert torch.allclose(ccw[i], torch.stack([r * torch.cos(theta[i]) + 5, r * torch.sin(theta[i])]))
    z = 6 * math.pi + 1 - theta[i]  # clockwise: r = 50 * 0.3 / z about (-5, 0), angle z = 6 pi + 1 - theta
    assert torch.allclose(cw[i], torch.stack([15 / z * torch.cos(z) - 5, 15 / z * torch.sin(z)]))


def angular_velocity_sign(truth, clockwise):
    """Sign of d(angle)/dt about each trajectory's own centre: (+5, 0) counter-clockwise, (-5, 0) clockwise."""
    centre = torch.where(clockwise, -5.0, 5.0)
    relative = truth - torch.stack([centre, torch.zeros_like(centre)], -1)[:, None]
    step = relative[:, 1:] - relative[:, :-1]
    cross = relative[:, :-1, 0] * step[..., 1] - relative[:, :-1, 1] * step[..., 0]
    return torch.sign(cross)


def test_two_directions_about_their_centres():
    spirals, data = loaded(n_spirals=400)
    clockwise = spirals.clockwise
    assert 150 < int(clockwise.sum()) < 250  # each spiral's rotation drawn uniformly
    signs = angular_velocity_sign(everything(data)["truth"], clockwise)
    assert (signs[clockwise] == -1).all() and (signs[~clockwise] == 1).all()


def test_window_bounds_and_noise_free_future():
    spirals, data = loaded(n_spirals=1000)
    start = spirals.window_start
    assert start.min() >= 100 and start.max() < 800  # 100 noise-free points always follow the window
    assert start.min() < 110 and start.max() > 790  # the whole range is drawn from
    assert (start + 200 <= ARCHIMEDEAN_TOTAL).all()
    _, ccw, cw = archimedean_curves()
    truth = everything(data)["truth"]
    for k in (0, 1, 500, 999):
        curve = cw if spirals.clockwise[k] else ccw
        assert torch.allclose(truth[k], curve[start[k] : start[k] + 200].float())


def test_noise_level_is_the_examples():
    spirals, data = loaded(n_spirals=300, n_obs=100)
    rows = everything(data)
    noise = rows["values"] - rows["truth"][:, :100]
    assert rows["mask"].all() and noise.std().item() == pytest.approx(0.3, abs=0.01)
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01)
    assert Spirals(kind="archimedean", noise_std=0.05).noise_std == 0.05


def test_deterministic_in_the_seed():
    batches = []
    for seed in (1, 1, 2):
        _, data = loaded(seed=seed)
        batches.append(next(iter(DataLoader(data.train, batch_size=8))))
    a, b, c = batches
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["truth"], c["truth"]) and not torch.equal(a["values"], c["values"])


def test_extrapolation_rmse_by_hand():
    _, data = loaded(n_spirals=4, n_obs=70, test_fraction=0.5)

    class Offset(torch.nn.Module):
        def predict(self, batch):
            prediction = batch["truth"].clone()
            prediction[:, 100:] += torch.tensor([0.3, 0.4])  # each extrapolated point off by (0.3, 0.4)
            prediction[:, :100] += 10.0 * batch["mask"][..., None]  # observed points are never scored
            return prediction

    metrics = TimeSeries().evaluate(Offset(), [next(iter(DataLoader(data.test, batch_size=2)))])
    # per coordinate: (0.09 + 0.16) / 2 = 0.125 on the 100 future points of each of the 2 test spirals
    assert metrics["test_rmse_extrap"] == pytest.approx(math.sqrt(0.125))
    assert metrics["test_rmse_interp"] == 0.0
    assert TimeSeries.headline == "test_rmse_extrap"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"dataset\.kind='fermat': accepted values: logarithmic, archimedean"):
        Spirals(kind="fermat")
    with pytest.raises(ValueError, match=r"dataset\.n_points=400 with dataset\.kind=archimedean"):
        Spirals(kind="archimedean", n_points=400, n_obs=30)
    cfg = compose_config("experiment=spiral_latent_ode", "++dataset.kind=fermat")
    with pytest.raises(ConfigError, match=r"dataset\.kind='fermat': accepted values: logarithmic, archimedean"):
        validate_config(cfg)
    validate_config(compose_config("experiment=spiral_latent_ode", "++dataset.kind=archimedean"))


def test_train_future_adds_noisy_futures_to_the_training_split_only():
    _, plain = loaded(n_spirals=400, seed=3)
    _, data = loaded(n_spirals=400, seed=3, train_future=True)
    assert "future" not in plain.train[0] and "future" not in data.test[0]
    assert all(torch.equal(a, b) for a, b in zip(everything(plain).values(), everything(data).values()))
    future = torch.stack([data.train[i]["future"] for i in range(len(data.train))])
    after = torch.stack([data.train[i]["truth"][100:] for i in range(len(data.train))])
    assert future.shape == (320, 100, 2)
    assert (future - after).std().item() == pytest.approx(0.3, rel=0.02)
    assert (future - after).mean().abs().item() < 0.01
    _, again = loaded(n_spirals=400, seed=3, train_future=True)
    assert torch.equal(again.train[5]["future"], data.train[5]["future"])
