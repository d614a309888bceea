"""The paper's latent ODE (section 5): an RNN encoder run backwards in time gives q(z0 | observations),
``dz/dt = f(z)`` carries z0 to every time, and a decoder maps z(t) to observations. Trained on the ELBO."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from ..data.spirals import training_targets
from .ode_block import ODEBlock, SolverSettings


class RecognitionRNN(nn.Module):
    """Reads the observed points from last to first, each with the time gap to the one read before it."""

    def __init__(self, obs_dim: int, hidden: int, latent_dim: int):
        super().__init__()
        self.hidden, self.latent_dim = hidden, latent_dim
        self.cell = nn.Linear(obs_dim + 1 + hidden, hidden)
        self.to_posterior = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, times: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``times (N,)``, ``values (B, N, obs)``, ``mask (B, N)`` → posterior mean and log-variance ``(B, latent)``."""
        batch, n = mask.shape
        h = values.new_zeros(batch, self.hidden)
        last_time = times[n - 1].expand(batch)
        for j in range(n - 1, -1, -1):
            gap = (last_time - times[j])[:, None]
            updated = torch.tanh(self.cell(torch.cat([values[:, j], gap, h], dim=1)))
            h = torch.where(mask[:, j, None], updated, h)
            last_time = torch.where(mask[:, j], times[j], last_time)
        posterior = self.to_posterior(h)
        return posterior[:, : self.latent_dim], posterior[:, self.latent_dim :]


class LatentDynamics(nn.Module):
    """Autonomous ``dz/dt = f(z)``: one hidden layer with ELU."""

    def __init__(self, latent_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ELU(), nn.Linear(hidden, latent_dim))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(z)


def gaussian_log_density(x: Tensor, mean: Tensor, std: float) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per row."""
    return 0.5 * (logvar.exp() + mean**2 - 1.0 - logvar).sum(dim=-1)


class LatentODE(nn.Module):
    """With ``augment_dim``, the ODE flows ``latent_dim + augment_dim`` dimensions, the extra ones starting at
    zero (ANODE), and the decoder reads them all; q(z0) and its KL stay over the ``latent_dim`` ones.

    With ``kl_warmup_steps`` (KL annealing, Bowman et al. 2016), the ELBO's KL term is weighted by
    ``min(1, k / kl_warmup_steps)`` at the k-th training loss; the count is a buffer of the model, so a resumed
    run carries on where it stopped."""

    def __init__(
        self,
        obs_dim: int,
        solver: SolverSettings,
        latent_dim: int = 4,
        rnn_hidden: int = 25,
        dynamics_hidden: int = 20,
        decoder_hidden: int = 20,
        obs_noise_std: float = 0.1,
        augment_dim: int = 0,
        kl_warmup_steps: int = 0,
    ):
        super().__init__()
        self.augment_dim, self.kl_warmup_steps = augment_dim, kl_warmup_steps
        if kl_warmup_steps:
            self.register_buffer("losses_taken", torch.zeros((), dtype=torch.long))
        self.encoder = RecognitionRNN(obs_dim, rnn_hidden, latent_dim)
        self.dynamics = ODEBlock(LatentDynamics(latent_dim + augment_dim, dynamics_hidden), solver)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + augment_dim, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, obs_dim)
        )
        self.obs_noise_std = obs_noise_std

    def decode_path(self, z0: Tensor, times: Tensor) -> tuple[Tensor, Tensor]:
        """Latent path ``(B, T, latent + augment)`` and decoded observations ``(B, T, obs)`` at ``times``."""
        z0 = torch.cat([z0, z0.new_zeros(len(z0), self.augment_dim)], dim=1) if self.augment_dim else z0
        path = cast(Tensor, self.dynamics.trajectory(z0, times)).transpose(0, 1)  # a tensor state's solution
        return path, self.decoder(path)

    def elbo_terms(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per trajectory: the Gaussian log-likelihood of its observed points (and of its ``future`` ones, where the
        batch carries them) and the KL of q(z0)."""
        values, mask = batch["values"], batch["mask"]
        targets, counted = training_targets(batch)
        mean, logvar = self.encoder(batch["times"][0, : values.shape[1]], values, mask)
        z0 = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        _, decoded = self.decode_path(z0, batch["times"][0, : targets.shape[1]])
        log_likelihood = (gaussian_log_density(targets, decoded, self.obs_noise_std).sum(-1) * counted).sum(-1)
        return log_likelihood, kl_to_standard_normal(mean, logvar)

    def kl_weight(self) -> float:
        """The weight of the next training loss's KL term: 1 without warm-up."""
        if not self.kl_warmup_steps:
            return 1.0
        return min(1.0, (int(self.losses_taken) + 1) / self.kl_warmup_steps)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        log_likelihood, kl = self.elbo_terms(batch)
        weight = self.kl_weight()
        if self.kl_warmup_steps and self.training:
            self.losses_taken += 1
        loss = (weight * kl - log_likelihood).mean()
        return loss, {"log_likelihood": log_likelihood.mean().item(), "kl": kl.mean().item()}

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Decoded posterior-mean path over the whole grid (window and extrapolation): ``(B, T, obs)``."""
        values, mask = batch["values"], batch["mask"]
        times = batch["times"][0]
        mean, _ = self.encoder(times[: values.shape[1]], values, mask)
        return self.decode_path(mean, times)[1]
