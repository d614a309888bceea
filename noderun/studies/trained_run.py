"""Loading a finished run: its config, its model with trained weights, and a batch of its test data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..train.build import build_model
from ..train.checkpoint import find_checkpoint, load_checkpoint


@dataclass
class TrainedRun:
    directory: Path
    config: DictConfig
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor


def load_trained_run(path_or_dir: str | Path, batch_size: int) -> TrainedRun:
    """The model of the checkpoint at ``path_or_dir`` and the first ``batch_size`` test samples."""
    checkpoint_path = find_checkpoint(path_or_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    config = OmegaConf.create(checkpoint["config"])
    data = instantiate(config.dataset).load()
    model = build_model(config, data.info)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    images, labels = zip(*(data.test[i] for i in range(min(batch_size, len(data.test)))))
    return TrainedRun(checkpoint_path.parent, config, model, torch.stack(images), torch.as_tensor(labels))
