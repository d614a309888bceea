"""The RNN baseline of the paper's latent ODE experiment: 25 hidden units, Gaussian negative log-likelihood.

It steps along the regular grid of times. At each step it predicts the point, then reads the
observation where there is one and its own prediction where there is none (held-out and
extrapolated points), with a flag saying which; ``time_gaps=True`` adds the time since its last
real observation as an input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data.spirals import training_targets


class GridRNN(nn.Module):
    def __init__(self, obs_dim: int, hidden: int = 25, time_gaps: bool = True):
        super().__init__()
        self.hidden, self.time_gaps = hidden, time_gaps
        self.cell = nn.RNNCell(obs_dim + 1 + int(time_gaps), hidden)
        self.head = nn.Linear(hidden, obs_dim)
        self.log_std = nn.Parameter(torch.zeros(obs_dim))

    def rollout(self, batch: dict[str, Tensor], steps: int) -> Tensor:
        """Predictions ``(B, steps, obs)`` for the first ``steps`` grid times."""
        values, mask, times = batch["values"], batch["mask"], batch["times"][0]
        batch_size, observed_steps = mask.shape
        h = values.new_zeros(batch_size, self.hidden)
        last_seen = times[0].expand(batch_size)
        predictions = []
        for k in range(steps):
            prediction = self.head(h)
            predictions.append(prediction)
            seen = mask[:, k] if k < observed_steps else torch.zeros_like(mask[:, 0])
            reading = torch.where(seen[:, None], values[:, min(k, observed_steps - 1)], prediction.detach())
            last_seen = torch.where(seen, times[k], last_seen)
            inputs = [reading, seen[:, None].to(values.dtype)]
            if self.time_gaps:
                inputs.append((times[k] - last_seen)[:, None])
            h = self.cell(torch.cat(inputs, dim=1), h)
        return torch.stack(predictions, dim=1)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """The Gaussian NLL of the observed points (and of the ``future`` ones, where the batch carries them)."""
        targets, counted = training_targets(batch)
        mean = self.rollout(batch, targets.shape[1])
        std = self.log_std.exp()
        nll = 0.5 * ((targets - mean) / std) ** 2 + self.log_std + 0.5 * math.log(2 * math.pi)
        per_trajectory = (nll.sum(-1) * counted).sum(-1)
        return per_trajectory.mean(), {"nll": per_trajectory.mean().item()}

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        return self.rollout(batch, batch["times"].shape[1])
