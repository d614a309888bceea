"""Loading a finished run: its config, its model with trained weights, and its data."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.splits import DataSplits
from ..errors import ConfigError
from ..train.build import build_model
from ..train.checkpoint import find_checkpoint, load_checkpoint


@dataclass
class TrainedModel:
    directory: Path
    config: DictConfig
    model: nn.Module
    data: DataSplits


@dataclass
class TrainedRun:
    directory: Path
    config: DictConfig
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor


def load_trained_model(path_or_dir: str | Path) -> TrainedModel:
    """The model of the checkpoint at ``path_or_dir`` (in eval mode) and the data it was trained on."""
    checkpoint_path = find_checkpoint(path_or_dir)
    checkpoint = load_checkpoint(checkpoint_path, key="run")
    config = OmegaConf.create(checkpoint["config"])
    if not isinstance(config, DictConfig):
        raise ConfigError(f"run={path_or_dir}: {checkpoint_path} holds a config that is not a mapping of settings")
    data = instantiate(config.dataset).load()
    model = build_model(config, data.info)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return TrainedModel(checkpoint_path.parent, config, model, data)


def load_trained_run(path_or_dir: str | Path, batch_size: int) -> TrainedRun:
    """A trained image classifier and its first ``batch_size`` test samples."""
    trained = load_trained_model(path_or_dir)
    images, labels = zip(*(trained.data.test[i] for i in range(min(batch_size, len(cast(Sized, trained.data.test))))))
    return TrainedRun(trained.directory, trained.config, trained.model, torch.stack(images), torch.as_tensor(labels))
