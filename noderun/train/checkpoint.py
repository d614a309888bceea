"""Checkpoints: model, optimiser, schedule, position in training and random states, written atomically.

A checkpoint is data, not code: only tensors and plain containers are written, and files are read with
``torch.load(weights_only=True)``, so a checkpoint from elsewhere cannot run anything when it is loaded."""

from __future__ import annotations

import os
import pickle
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"


def random_states() -> dict[str, Any]:
    """This process's random states as plain data: python's is a tuple of ints, numpy's keys become a tensor."""
    # the default legacy=True gives the tuple; numpy's stub types a bare call as its legacy=False dict
    name, keys, position, has_gauss, cached_gaussian = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state()
    )
    numpy_state = {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
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


def load_checkpoint(path_or_dir: str | Path, key: str = "resume") -> dict[str, Any]:
    """The checkpoint's tensors and plain data; ``ConfigError`` (naming ``key``, the setting that gave the path)
    for a file that is not readable or that holds any other object, which is refused without being built."""
    path = find_checkpoint(path_or_dir)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe is None:
            raise ConfigError(
                f"{key}={path_or_dir}: {path} is not a readable noderun checkpoint ({first_line(error)})"
            ) from None
        raise ConfigError(
            f"{key}={path_or_dir}: {path.name} holds a pickled object ({unsafe[1]}), not only "
            "tensors and plain data; noderun loads checkpoints as data and refuses it unloaded "
            "(checkpoints written by noderun 0.1.0 before this check pickled numpy's random state)"
        ) from None
    except Exception as error:  # a truncated or foreign file: refuse it whole
        raise ConfigError(
            f"{key}={path_or_dir}: {path} is not a readable noderun checkpoint ({first_line(error)})"
        ) from None


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


ADDED_MODEL_KEYS = {"augment_dim": 0}  # model keys added after runs were saved, at the value those runs had


def with_added_keys(saved: Any, current: Any) -> Any:
    """A saved model config with the keys added since that ``current`` has, at their earlier value."""
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return saved
    return {**{key: value for key, value in ADDED_MODEL_KEYS.items() if key in current}, **saved}


def check_matches(
    checkpoint: Any, model: torch.nn.Module, config: dict[str, Any], source: str | Path, required: Sequence[str]
) -> None:
    """``ValueError`` unless ``checkpoint`` is a complete noderun checkpoint (every key of ``required``: the
    trainer's ``REQUIRED_STATE_KEYS``) of ``model`` trained with the same ``model`` config: every parameter
    and buffer by name and shape."""
    missing = [key for key in required if key not in checkpoint] if isinstance(checkpoint, dict) else list(required)
    if missing:
        raise ValueError(f"resume={source}: not a complete noderun checkpoint (missing {', '.join(missing)})")
    trained_with = checkpoint["config"].get("model") if isinstance(checkpoint["config"], dict) else None
    if with_added_keys(trained_with, config.get("model")) != config.get("model"):
        raise ValueError(
            f"resume={source}: the checkpoint was trained with model {trained_with}, this run "
            f"builds model {config.get('model')}"
        )
    saved = {key: tuple(value.shape) for key, value in checkpoint["model"].items()}
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if saved != expected:
        differing = sorted(key for key in saved.keys() | expected.keys() if saved.get(key) != expected.get(key))
        raise ValueError(
            f"resume={source}: the checkpoint's tensors do not match this model's "
            f"({', '.join(differing[:5])}{' …' if len(differing) > 5 else ''})"
        )
