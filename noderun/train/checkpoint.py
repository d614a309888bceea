"""Checkpoints: model, optimiser, schedule, position in training and random states, written atomically."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Sequence

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


def check_matches(checkpoint: Any, model: torch.nn.Module, config: dict[str, Any], source: str | Path,
                  required: Sequence[str]) -> None:
    """``ValueError`` unless ``checkpoint`` is a complete noderun checkpoint (every key of ``required``: the
    trainer's ``REQUIRED_STATE_KEYS``) of ``model`` trained with the same ``model`` config: every parameter
    and buffer by name and shape."""
    missing = [key for key in required if key not in checkpoint] if isinstance(checkpoint, dict) else list(required)
    if missing:
        raise ValueError(f"resume={source}: not a complete noderun checkpoint (missing {', '.join(missing)})")
    trained_with = checkpoint["config"].get("model") if isinstance(checkpoint["config"], dict) else None
    if trained_with != config.get("model"):
        raise ValueError(f"resume={source}: the checkpoint was trained with model {trained_with}, this run "
                         f"builds model {config.get('model')}")
    saved = {key: tuple(value.shape) for key, value in checkpoint["model"].items()}
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if saved != expected:
        differing = sorted(key for key in saved.keys() | expected.keys() if saved.get(key) != expected.get(key))
        raise ValueError(f"resume={source}: the checkpoint's tensors do not match this model's "
                         f"({', '.join(differing[:5])}{' …' if len(differing) > 5 else ''})")
