"""Checking a composed config before anything is built: one line naming the key and what it accepts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..data.spirals import SPIRAL_KINDS
from ..errors import ConfigError
from ..solvers.methods import get_method
from ..solvers.options import SettingError, is_positive
from ..solvers.settings import GRAD_MODES, SolverSettings
from .checkpoint import find_checkpoint
from .device import resolve_device
from .distributed import environment_processes
from .failures import FAILURE_POLICIES


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value a run cannot use."""
    _check_training(cfg)
    _check_dataset(cfg)
    _check_solver(cfg)
    _check_device(cfg)
    _check_data_dir(cfg)
    _check_resume(cfg)


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _positive_int(cfg: DictConfig, key: str, optional: bool = False) -> None:
    value = _value(cfg, key)
    if not (is_positive(value, integer=True) or (optional and value is None)):
        accepted = "a positive integer" + (" or null" if optional else "")
        raise ConfigError(f"{key}={value!r}: accepted values: {accepted}")


def _positive_number(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if not is_positive(value):
        raise ConfigError(f"{key}={value!r}: accepted values: a finite positive number")


def _check_training(cfg: DictConfig) -> None:
    for key in ("train.epochs", "train.batch_size", "train.test_batch_size"):
        _positive_int(cfg, key)
    _positive_int(cfg, "train.max_iters", optional=True)
    _positive_int(cfg, "train.max_bad_batches", optional=True)
    _positive_int(cfg, "threads", optional=True)
    _positive_int(cfg, "log.every_steps", optional=True)
    for key in ("train.lr", "train.lr_gamma"):
        if _value(cfg, key) is not None:
            _positive_number(cfg, key)
    milestones = _value(cfg, "train.lr_milestones") or []
    if any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in milestones):
        raise ConfigError(f"train.lr_milestones={list(milestones)!r}: accepted values: a list of positive epochs")
    if not isinstance(_value(cfg, "seed"), int):
        raise ConfigError(f"seed={_value(cfg, 'seed')!r}: accepted values: an integer")
    policy = _value(cfg, "train.on_solver_error")
    if policy not in FAILURE_POLICIES:
        raise ConfigError(f"train.on_solver_error={policy!r}: accepted values: {', '.join(FAILURE_POLICIES)}")
    _check_processes(cfg, policy)


def _check_dataset(cfg: DictConfig) -> None:
    kind = _value(cfg, "dataset.kind")
    if str(_value(cfg, "dataset._target_")).endswith(".Spirals") and kind is not None and kind not in SPIRAL_KINDS:
        raise ConfigError(f"dataset.kind={kind!r}: accepted values: {', '.join(SPIRAL_KINDS)}")


def _check_processes(cfg: DictConfig, policy: str) -> None:
    world_size = environment_processes().world_size
    if world_size == 1:
        return
    if cfg.train.batch_size % world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is the global batch of {world_size} processes: "
                          f"accepted values: a multiple of {world_size}")
    if policy != "raise":
        raise ConfigError(f"train.on_solver_error={policy} with {world_size} processes: accepted values: raise "
                          "(the processes would disagree on which batches to skip or retry)")


def _check_solver(cfg: DictConfig) -> None:
    mode, seminorm = _value(cfg, "grad.mode"), _value(cfg, "grad.seminorm")
    if mode not in GRAD_MODES:
        raise ConfigError(f"grad.mode={mode!r}: accepted values: {', '.join(GRAD_MODES)}")
    if seminorm and mode != "adjoint":
        raise ConfigError(f"grad.seminorm=true applies to the adjoint's backward solve, not grad.mode={mode}: "
                          "use grad=adjoint or drop grad.seminorm")
    _check_solver_node(cfg, "solver")
    if _value(cfg, "train.on_solver_error") == "fallback":
        _check_solver_node(cfg, "train.fallback")


def _check_solver_node(cfg: DictConfig, key: str) -> None:
    node = _value(cfg, key)
    if not isinstance(node, DictConfig) or "method" not in node:
        raise ConfigError(f"{key}: accepted values: a solver config with a method (as conf/solver/*.yaml)")
    try:
        tableau = get_method(node.method)
    except ValueError as error:
        raise ConfigError(f"{key}.method={node.method!r}: {error}") from None
    tolerances = [name for name in ("rtol", "atol") if node.get(name) is not None]
    if not tableau.adaptive and tolerances and node.get("step_size") is None:
        raise ConfigError(f"{key}.{tolerances[0]} without {key}.step_size: the fixed-step method {node.method!r} "
                          f"has no error control; set {key}.step_size (a positive number) or choose an adaptive "
                          "method")
    try:
        SolverSettings.from_config(node, cfg.grad, key=key)
    except SettingError as error:  # its message names the config key already
        raise ConfigError(str(error)) from None


def _check_device(cfg: DictConfig) -> None:
    try:
        resolve_device(str(_value(cfg, "device")))
    except ValueError as error:
        raise ConfigError(f"device={_value(cfg, 'device')!r}: {error}") from None


def _check_data_dir(cfg: DictConfig) -> None:
    """Only datasets read from disk (a ``root`` key) use ``data_dir``: it must exist, or be creatable when the
    dataset may download."""
    if _value(cfg, "dataset.root") is None:
        return
    path = Path(str(cfg.dataset.root))
    if _value(cfg, "dataset.download"):
        existing = next(p for p in [path, *path.absolute().parents] if p.exists())
        if not os.access(existing, os.W_OK):
            raise ConfigError(f"data_dir={str(path)!r}: {existing} cannot be written, so the download has nowhere "
                              "to go; accepted values: a writable folder")
    elif not path.is_dir():
        raise ConfigError(f"data_dir={str(path)!r} does not exist; accepted values: a folder holding MNIST/raw "
                          "(or dataset.download=true to fetch it there)")


def _check_resume(cfg: DictConfig) -> None:
    setting = _value(cfg, "resume")
    if setting is None or setting == "auto":
        return
    try:
        find_checkpoint(str(setting))
    except FileNotFoundError:
        raise ConfigError(f"resume={str(setting)!r}: no checkpoint there; accepted values: a checkpoint file, a run "
                          "directory holding checkpoint.pt, auto, or null") from None
