"""Image classification: cross-entropy loss; accuracy and test error in percent."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Classification:
    """Batches are ``(images, labels)``; the headline metric is ``test_error`` (percent)."""

    headline = "test_error"

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        correct = (logits.argmax(dim=1) == labels).sum().item()
        return loss, {"correct": correct, "count": len(labels)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches) -> dict[str, float]:
        total_loss, correct, count = 0.0, 0, 0
        for images, labels in batches:
            logits = model(images)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            count += len(labels)
        accuracy = 100.0 * correct / count
        return {"test_loss": total_loss / count, "test_accuracy": accuracy, "test_error": 100.0 - accuracy}
