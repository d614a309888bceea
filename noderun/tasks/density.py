"""Density tasks for normalizing flows (the paper's section 4), on batches ``(samples,)`` of shape ``(B, D)``.

- ``DensityEstimation``: maximum likelihood on data samples; headline ``test_nll``, nats per held-out
  sample, beside ``test_nll_data``, the same for the data's own density (the best any model can do).
- ``DensityMatching``: minimise ``KL(q || p)`` against the dataset's normalised ``log_density`` from
  the model's own samples (a batch only sets how many); headline ``test_kl`` on a fixed set of draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, cast

import torch
from torch import Tensor, nn

LogDensity = Callable[[Tensor], Tensor]


class Flow(Protocol):
    """What the density tasks call on their model (``models.cnf.CNF``, ``models.planar_nf.PlanarNF``)."""

    def log_prob(self, x: Tensor) -> Tensor: ...

    def sample_with_log_prob(
        self, n: int, like: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]: ...


class FlowTask:
    """What both density tasks (each a ``Task``) share: nothing to aggregate over training batches beyond the loss."""

    @staticmethod
    def train_metrics(iterations: list[dict[str, float]]) -> dict[str, float]:
        return {}

    def live_status(self, iterations: list[dict[str, float]]) -> str:
        return ""


class DensityEstimation(FlowTask):
    headline = "test_nll"

    def __init__(self, log_density: LogDensity | None = None):
        self.log_density = log_density

    def loss(self, model: nn.Module, batch: list[Tensor]) -> tuple[Tensor, dict[str, float]]:
        samples = batch[0]
        return -cast(Flow, model).log_prob(samples).mean(), {"count": len(samples)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[list[Tensor]]) -> dict[str, float]:
        model_nll, data_nll, count = 0.0, 0.0, 0
        for (samples,) in batches:
            model_nll -= cast(Flow, model).log_prob(samples).sum().item()
            if self.log_density is not None:
                data_nll -= self.log_density(samples).sum().item()
            count += len(samples)
        metrics = {"test_nll": model_nll / count}
        if self.log_density is not None:
            metrics["test_nll_data"] = data_nll / count
        return metrics


class DensityMatching(FlowTask):
    headline = "test_kl"

    def __init__(self, log_density: LogDensity, eval_samples: int = 5000, eval_seed: int = 0):
        if eval_samples < 1:
            raise ValueError(f"task.eval_samples must be a positive integer, got {eval_samples}")
        self.log_density, self.eval_samples, self.eval_seed = log_density, eval_samples, eval_seed

    def kl(self, model: nn.Module, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Monte-Carlo ``KL(q || p) = E_q[log q(x) - log p(x)]`` from ``n`` of the model's samples."""
        samples, log_q = cast(Flow, model).sample_with_log_prob(n, like, generator)
        return (log_q - self.log_density(samples)).mean()

    def loss(self, model: nn.Module, batch: list[Tensor]) -> tuple[Tensor, dict[str, float]]:
        return self.kl(model, len(batch[0]), batch[0]), {"count": len(batch[0])}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[list[Tensor]]) -> dict[str, float]:
        """The KL on the same ``eval_samples`` base draws at every evaluation (the batches set the device)."""
        like = next(iter(batches))[0]
        generator = torch.Generator().manual_seed(self.eval_seed)
        return {"test_kl": self.kl(model, self.eval_samples, like, generator).item()}
