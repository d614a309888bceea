"""Latent ODE on spirals: the data generator, the ELBO terms, the presets, extrapolation and the figures."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import compose_config
from noderun.data.spirals import Spirals, training_targets
from noderun.models.latent_ode import LatentODE, gaussian_log_density, kl_to_standard_normal
from noderun.models.ode_block import SolverSettings
from noderun.models.rnn import GridRNN
from noderun.studies.spiral_figures import spiral_figures, turning_direction
from noderun.tasks.timeseries import TimeSeries
from noderun.train.run import run

SMALL = ["dataset.n_spirals=40", "train.batch_size=16", "train.max_iters=2", "train.progress=false"]


def first_batch(n_obs=30, size=8, seed=0):
    data = Spirals(n_spirals=40, n_obs=n_obs, seed=seed).load()
    return next(iter(DataLoader(data.train, batch_size=size)))


def test_generator_shapes_masks_and_directions():
    data = Spirals(n_spirals=40, n_points=100, n_obs=30).load()
    assert (len(data.train), len(data.test)) == (32, 8)
    sample = data.train[0]
    assert sample["times"].shape == (200,) and sample["values"].shape == (100, 2)
    assert sample["mask"].shape == (100,) and sample["truth"].shape == (200, 2)
    masks = torch.stack([data.train[i]["mask"] for i in range(32)])
    assert (masks.sum(1) == 30).all() and len({tuple(m.nonzero().flatten().tolist()) for m in masks}) == 32
    values = torch.stack([data.train[i]["values"] for i in range(32)])
    assert (values[~masks] == 0).all()
    truth = torch.cat([torch.stack([part[i]["truth"] for i in range(len(part))]) for part in (data.train, data.test)])
    assert turning_direction(truth).sum() == 0  # half clockwise, half counter-clockwise
    assert sample["times"][100] > 5.0  # extrapolation times beyond the observation window


def test_generator_is_deterministic_in_the_seed():
    a, b, c = first_batch(seed=1), first_batch(seed=1), first_batch(seed=2)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["truth"], c["truth"])


def test_bad_n_obs_is_refused():
    with pytest.raises(ValueError, match="n_obs"):
        Spirals(n_obs=101)


def test_kl_and_likelihood_terms():
    assert kl_to_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0
    assert kl_to_standard_normal(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)
    x, mean = torch.randn(5), torch.randn(5)
    expected = torch.distributions.Normal(mean, 0.3).log_prob(x)
    assert torch.allclose(gaussian_log_density(x, mean, 0.3), expected)
    samples = torch.randn(200_000, 2) * 0.5 + 1.0  # Monte Carlo KL of N(1, 0.25) to N(0, 1)
    mc = torch.distributions.Normal(1.0, 0.5).log_prob(samples) - torch.distributions.Normal(0, 1).log_prob(samples)
    analytic = kl_to_standard_normal(torch.ones(1, 2), torch.full((1, 2), math.log(0.25))).item()
    assert mc.sum(1).mean().item() == pytest.approx(analytic, rel=0.02)


def test_kl_warmup_weights_the_kl_term_and_its_count_survives_a_state_dict():
    torch.manual_seed(0)
    model, batch = LatentODE(2, SolverSettings(rtol=1e-5, atol=1e-5), kl_warmup_steps=4), first_batch()
    weights = []
    for _ in range(5):
        torch.manual_seed(1)
        log_likelihood, kl = model.elbo_terms(batch)
        weights.append(model.kl_weight())
        torch.manual_seed(1)
        loss, _ = model.training_loss(batch)
        assert torch.allclose(loss, (weights[-1] * kl - log_likelihood).mean())
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0]
    model.eval()
    model.training_loss(batch)  # a loss outside training does not count
    resumed = LatentODE(2, SolverSettings(rtol=1e-5, atol=1e-5), kl_warmup_steps=8)
    resumed.load_state_dict(model.state_dict())
    assert resumed.kl_weight() == 6 / 8
    assert (
        LatentODE(2, SolverSettings()).kl_weight() == 1.0
        and "losses_taken" not in LatentODE(2, SolverSettings()).state_dict()
    )


def test_unobserved_values_are_never_used():
    torch.manual_seed(0)
    model = LatentODE(2, SolverSettings(rtol=1e-6, atol=1e-6))
    batch = first_batch()
    changed = dict(batch, values=batch["values"] + 5.0 * (~batch["mask"])[..., None])
    times = batch["times"][0, :100]
    for a, b in zip(
        model.encoder(times, batch["values"], batch["mask"]), model.encoder(times, changed["values"], changed["mask"])
    ):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    log_likelihood, _ = model.elbo_terms(batch)
    torch.manual_seed(1)
    assert torch.equal(log_likelihood, model.elbo_terms(changed)[0])


def batch_with_future(size=8):
    data = Spirals(kind="archimedean", n_spirals=40, train_future=True).load()
    return next(iter(DataLoader(data.train, batch_size=size)))


def without_future(batch):
    return {key: value for key, value in batch.items() if key != "future"}


def test_training_targets_append_every_future_point():
    batch = batch_with_future()
    targets, counted = training_targets(batch)
    assert torch.equal(targets, torch.cat([batch["values"], batch["future"]], dim=1))
    assert torch.equal(counted[:, :100], batch["mask"]) and counted[:, 100:].all()
    assert training_targets(without_future(batch)) == (batch["values"], batch["mask"])


def test_latent_ode_likelihood_adds_the_future_points():
    torch.manual_seed(0)
    model, batch = LatentODE(2, SolverSettings(rtol=1e-7, atol=1e-7), obs_noise_std=0.3), batch_with_future()
    torch.manual_seed(1)
    with_future, kl = model.elbo_terms(batch)
    torch.manual_seed(1)
    window_only, kl_plain = model.elbo_terms(without_future(batch))
    torch.manual_seed(1)
    mean, logvar = model.encoder(batch["times"][0, :100], batch["values"], batch["mask"])
    z0 = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    decoded = model.decode_path(z0, batch["times"][0])[1]
    future_part = gaussian_log_density(batch["future"], decoded[:, 100:], 0.3).sum((1, 2))
    assert torch.equal(kl, kl_plain) and (future_part < 0).all()
    assert torch.allclose(with_future, window_only + future_part, rtol=1e-5)


def test_rnn_loss_adds_the_future_points():
    torch.manual_seed(0)
    model, batch = GridRNN(2), batch_with_future()
    mean, std = model.rollout(batch, 200), model.log_std.exp()
    nll = (0.5 * ((batch["future"] - mean[:, 100:]) / std) ** 2 + model.log_std + 0.5 * math.log(2 * math.pi)).sum(-1)
    expected = model.training_loss(without_future(batch))[0] + nll.sum(-1).mean()
    assert torch.allclose(model.training_loss(batch)[0], expected)


@pytest.mark.parametrize("model", [LatentODE(2, SolverSettings(rtol=1e-5, atol=1e-5)), GridRNN(2)])
def test_predictions_extrapolate_beyond_the_window(model):
    batch = first_batch()
    with torch.no_grad():
        prediction = model.predict(batch)
    assert prediction.shape == batch["truth"].shape and torch.isfinite(prediction).all()
    assert not torch.allclose(prediction[:, 100:], prediction[:, 99:100].expand(-1, 100, -1))


def test_rmse_counts_held_out_and_extrapolated_points():
    class Offset(torch.nn.Module):
        def predict(self, batch):
            prediction = batch["truth"].clone()
            prediction[:, 100:] += 1.0  # extrapolation off by 1 in each coordinate
            return prediction

    metrics = TimeSeries().evaluate(Offset(), [first_batch()])
    assert metrics["test_rmse_interp"] == 0.0 and metrics["test_rmse_extrap"] == pytest.approx(1.0)
    assert "test_rmse" not in metrics  # no score mixes the window's points with the extrapolated ones


@pytest.mark.parametrize(
    "preset, extra",
    [
        ("spiral_latent_ode", []),
        ("spiral_latent_ode", ["grad=adjoint"]),
        ("spiral_rnn", []),
        ("spiral_rnn", ["model.time_gaps=false"]),
        ("spiral_latent_ode", ["dataset.train_future=true"]),
        ("spiral_rnn", ["dataset.train_future=true"]),
    ],
)
def test_spiral_presets_run(preset, extra, tmp_path):
    cfg = compose_config(f"experiment={preset}", *SMALL, *extra)
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["task"] == "timeseries"
    assert summary["headline"] == "test_rmse_extrap" and summary["test_rmse_extrap"] > 0
    assert (summary["nfe_forward"] > 0) == (preset == "spiral_latent_ode")
    assert (summary["nfe_backward"] > 0) == ("grad=adjoint" in extra)


def test_spiral_figures_from_tiny_runs(tmp_path):
    runs = {}
    for preset in ("spiral_latent_ode", "spiral_rnn"):
        cfg = compose_config(f"experiment={preset}", *SMALL)
        run(cfg, tmp_path / preset)
        runs[preset] = str(tmp_path / preset)
    paths = spiral_figures(runs["spiral_latent_ode"], runs["spiral_rnn"], str(tmp_path / "figures"))
    assert [p.name for p in paths] == [
        "figure8_reconstructions.png",
        "figure8_latent_paths.png",
        "figure9_latent_sweep.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
