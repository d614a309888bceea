"""Image classification: cross-entropy loss; accuracy and test error in percent."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Classification:
    """A ``Task``: batches are ``(images, labels)``; the headline metric is ``test_error`` (percent)."""

    headline = "test_error"

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        correct = (logits.argmax(dim=1) == labels).sum().item()
        return loss, {"correct": correct, "count": len(labels)}

    @staticmethod
    def train_metrics(iterations: list[dict[str, float]]) -> dict[str, float]:
        count = sum(i["count"] for i in iterations) or 1
        return {"train_accuracy": 100.0 * sum(i["correct"] for i in iterations) / count}

    def live_status(self, iterations: list[dict[str, float]]) -> str:
        return f"acc {self.train_metrics(iterations)['train_accuracy']:5.1f}%"

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
        total_loss, correct, count = 0.0, 0, 0
        for images, labels in batches:
            logits = model(images)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            count += len(labels)
        accuracy = 100.0 * correct / count
        return {"test_loss": total_loss / count, "test_accuracy": accuracy, "test_error": 100.0 - accuracy}
