"""``Task``: what a task gives the trainer. The tasks here satisfy it by their shape (no base class needed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Task(Protocol):
    """What a run optimises and measures, on the batches of its dataset."""

    headline: str  # the test metric a run is summarised by: a key of ``evaluate``'s result

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """A training batch's loss, and its numbers for the epoch's aggregation: ``count`` (the batch's
        samples) at least. The trainer adds its own statistics to each record."""
        ...

    def train_metrics(self, iterations: list[dict[str, float]]) -> dict[str, float]:
        """The epoch's task metrics (``train_*``) from its per-batch records (never empty)."""
        ...

    def live_status(self, iterations: list[dict[str, float]]) -> str:
        """A short text for the progress bar from the latest per-batch records."""
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        """The test metrics (``test_*``, ``headline`` among them) over the test batches, without gradients."""
        ...
