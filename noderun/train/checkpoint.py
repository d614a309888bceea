"""Checkpoints: model, optimiser, schedule, position in training and random states, written atomically."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def random_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves a torn file."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def find_checkpoint(path_or_dir: str | Path) -> Path:
    """The checkpoint file itself, or the one inside a run directory."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"resume={path_or_dir}: no checkpoint at {path.resolve()}")
    return path


def load_checkpoint(path_or_dir: str | Path) -> dict[str, Any]:
    path = find_checkpoint(path_or_dir)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: refuse it whole
        raise ValueError(f"resume={path_or_dir}: {path} is not a readable noderun checkpoint ({error})") from error
