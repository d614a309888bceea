"""Irregularly observed trajectories: the model's own training loss (ELBO or NLL); the headline metric
``test_rmse_extrap`` is the paper's predictive RMSE on the time points extending beyond the observation
window, against the noise-free trajectory; ``test_rmse_interp`` scores the window's unobserved points."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, cast

import torch
from torch import Tensor, nn


class SeriesModel(Protocol):
    """What the task calls on its model (``models.latent_ode.LatentODE``, ``models.rnn.GridRNN``)."""

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...

    def predict(self, batch: dict[str, Tensor]) -> Tensor: ...


class TimeSeries:
    """A ``Task``: batches are dicts of trajectories (``values``, ``mask``, ``truth``, ...)."""

    headline = "test_rmse_extrap"

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss, parts = cast(SeriesModel, model).training_loss(batch)
        return loss, {"count": len(batch["values"]), **parts}

    @staticmethod
    def train_metrics(iterations: list[dict[str, float]]) -> dict[str, float]:
        count = sum(i["count"] for i in iterations) or 1
        keys = [key for key in iterations[0] if key in ("log_likelihood", "kl", "nll")] if iterations else []
        return {f"train_{key}": sum(i[key] * i["count"] for i in iterations) / count for key in keys}

    def live_status(self, iterations: list[dict[str, float]]) -> str:
        return "  ".join(
            f"{key.removeprefix('train_')} {value:.3g}" for key, value in self.train_metrics(iterations).items()
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Tensor]]) -> dict[str, float]:
        sums = {"interp": 0.0, "extrap": 0.0}
        counts = {"interp": 0, "extrap": 0}
        for batch in batches:
            squared = (cast(SeriesModel, model).predict(batch) - batch["truth"]).pow(2).sum(-1)  # (B, T)
            window = batch["mask"].shape[1]
            held_out = {"interp": ~batch["mask"], "extrap": torch.ones_like(squared[:, window:], dtype=torch.bool)}
            parts = {"interp": squared[:, :window], "extrap": squared[:, window:]}
            for name in sums:
                sums[name] += parts[name][held_out[name]].sum().item()
                counts[name] += int(held_out[name].sum()) * batch["truth"].shape[-1]
        metrics = {"test_rmse_extrap": (sums["extrap"] / counts["extrap"]) ** 0.5}
        if counts["interp"]:
            metrics["test_rmse_interp"] = (sums["interp"] / counts["interp"]) ** 0.5
        return metrics
