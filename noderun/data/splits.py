"""What a dataset module hands the runner."""
from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass
class DataSplits:
    """Train and test datasets of ``(input, target)`` pairs, with the input shape and class count."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
