"""What a dataset module hands the runner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset


@dataclass
class DataSplits:
    """Train and test datasets, and ``info``: the runtime facts a model is built with
    (``input_shape`` and ``num_classes`` for images, ``obs_dim`` for trajectories)."""

    train: Dataset
    test: Dataset
    info: dict[str, Any]
