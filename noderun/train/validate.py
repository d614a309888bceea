"""Checking a composed config before anything is built: one line naming the key and what it accepts.
The schemas (conf/schema.py) have refused unknown keys and values of the wrong type while composing; what is
checked here is what they cannot say: keys added beyond them (``+key=``), ranges, known names, files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..data.mnist import missing_files
from ..data.spirals import SPIRAL_KINDS
from ..data.toy2d import SHAPES
from ..errors import ConfigError
from ..models.cnf import TRACES
from ..models.planar_nf import DIRECTIONS
from ..models.regularize import TERMS
from ..models.trace import NOISES
from ..solvers.methods import get_method
from ..solvers.options import SettingError, is_positive
from ..solvers.settings import GRAD_MODES, SolverSettings
from .checkpoint import find_checkpoint
from .config_errors import undeclared_keys, unknown_key
from .device import resolve_device
from .distributed import environment_processes
from .failures import FAILURE_POLICIES

SEED_RANGE = (0, 2**32 - 1)  # what numpy's seed accepts
POSITIVE_INTEGERS = (
    "train.epochs",
    "train.batch_size",
    "train.test_batch_size",
    "dataset.n_spirals",
    "dataset.n_points",
    "dataset.n_obs",
    "dataset.n_train",
    "dataset.n_test",
    "dataset.n_reference",
    "model.channels",
    "model.blocks",
    "model.hidden",
    "model.width",
    "model.hyper_hidden",
    "model.layers",
    "model.latent_dim",
    "model.rnn_hidden",
    "model.dynamics_hidden",
    "model.decoder_hidden",
    "task.eval_samples",
)
OPTIONAL_POSITIVE_INTEGERS = (
    "train.keep_checkpoints",
    "train.max_iters",
    "train.max_bad_batches",
    "threads",
    "log.every_steps",
)
POSITIVE_NUMBERS = (
    "train.lr",
    "train.lr_gamma",
    "optimizer.lr",
    "dataset.t_window",
    "model.integration_time",
    "model.t_end",
    "model.base_variance",
    "model.obs_noise_std",
)
FRACTIONS = ("dataset.test_fraction",)  # strictly between 0 and 1
NON_NEGATIVE_NUMBERS = ("regularizer.kinetic", "regularizer.jacobian", "train.end_time_jitter")
NON_NEGATIVE_INTEGERS = ("model.augment_dim", "model.kl_warmup_steps")
ODE_MODELS = {"ODENet": "odenet", "LatentODE": "latent_ode", "CNF": "cnf"}  # by class: the models with ODE blocks
SPAN_MODELS = {"ODENet": "model.integration_time", "CNF": "model.t_end"}  # solved over [0, T]: their T's key
NAMES = {
    "train.on_solver_error": FAILURE_POLICIES,
    "grad.mode": GRAD_MODES,
    "dataset.kind": SPIRAL_KINDS,
    "dataset.name": tuple(SHAPES),
    "model.trace": TRACES,
    "model.noise": NOISES,
    "model.direction": DIRECTIONS,
    "regularizer.noise": NOISES,
}


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value a run cannot use."""
    _check_keys(cfg)
    _check_ranges(cfg)
    _check_names(cfg)
    _check_processes(cfg, _value(cfg, "train.on_solver_error"))
    _check_solver(cfg)
    _check_training_terms(cfg)
    _check_device(cfg)
    _check_data_dir(cfg)
    _check_resume(cfg)


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


_ABSENT = object()


def _present(cfg: DictConfig, keys: tuple[str, ...]) -> list[str]:
    """Those of ``keys`` that the composed config has (a model's keys only with that model)."""
    return [key for key in keys if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT]


def _check_keys(cfg: DictConfig) -> None:
    for key, accepted in undeclared_keys(cfg):
        raise ConfigError(unknown_key(key, accepted))


def _positive_int(cfg: DictConfig, key: str, optional: bool = False) -> None:
    value = _value(cfg, key)
    if not (is_positive(value, integer=True) or (optional and value is None)):
        accepted = "a positive integer" + (" or null" if optional else "")
        raise ConfigError(f"{key}={value!r}: accepted values: {accepted}")


def _positive_number(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if not is_positive(value):
        raise ConfigError(f"{key}={value!r}: accepted values: a finite positive number")


def _check_ranges(cfg: DictConfig) -> None:
    for key in _present(cfg, POSITIVE_INTEGERS):
        _positive_int(cfg, key)
    for key in _present(cfg, OPTIONAL_POSITIVE_INTEGERS):
        _positive_int(cfg, key, optional=True)
    for key in _present(cfg, POSITIVE_NUMBERS):
        _positive_number(cfg, key)
    for key in _present(cfg, NON_NEGATIVE_NUMBERS):
        if not (is_positive(_value(cfg, key)) or _value(cfg, key) == 0):
            raise ConfigError(f"{key}={_value(cfg, key)!r}: accepted values: a finite number, 0 or more")
    for key in _present(cfg, NON_NEGATIVE_INTEGERS):
        if not (is_positive(_value(cfg, key), integer=True) or _value(cfg, key) == 0):
            raise ConfigError(f"{key}={_value(cfg, key)!r}: accepted values: an integer, 0 or more")
    for key in _present(cfg, FRACTIONS):
        if not 0 < _value(cfg, key) < 1:
            raise ConfigError(f"{key}={_value(cfg, key)!r}: accepted values: a number between 0 and 1 (exclusive)")
    if any(m <= 0 for m in _value(cfg, "train.lr_milestones")):
        raise ConfigError(
            f"train.lr_milestones={list(cfg.train.lr_milestones)!r}: accepted values: a list of positive epochs"
        )
    low, high = SEED_RANGE
    if not low <= cfg.seed <= high:
        raise ConfigError(f"seed={cfg.seed}: accepted values: an integer from {low} to {high}")


def _check_names(cfg: DictConfig) -> None:
    for key in _present(cfg, tuple(NAMES)):
        if _value(cfg, key) not in NAMES[key]:
            raise ConfigError(f"{key}={_value(cfg, key)!r}: accepted values: {', '.join(NAMES[key])}")


def _check_processes(cfg: DictConfig, policy: str) -> None:
    world_size = environment_processes().world_size
    if world_size == 1:
        return
    if cfg.train.batch_size % world_size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is the global batch of {world_size} processes: "
            f"accepted values: a multiple of {world_size}"
        )
    if policy != "raise":
        raise ConfigError(
            f"train.on_solver_error={policy} with {world_size} processes: accepted values: raise "
            "(the processes would disagree on which batches to skip or retry)"
        )


def _check_solver(cfg: DictConfig) -> None:
    mode, seminorm = _value(cfg, "grad.mode"), _value(cfg, "grad.seminorm")
    if seminorm and mode != "adjoint":
        raise ConfigError(
            f"grad.seminorm=true applies to the adjoint's backward solve, not grad.mode={mode}: "
            "use grad=adjoint or drop grad.seminorm"
        )
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
        raise ConfigError(
            f"{key}.{tolerances[0]} without {key}.step_size: the fixed-step method {node.method!r} "
            f"has no error control; set {key}.step_size (a positive number) or choose an adaptive "
            "method"
        )
    try:
        SolverSettings.from_config(node, cfg.grad, key=key)
    except SettingError as error:  # its message names the config key already
        raise ConfigError(str(error)) from None


def _check_training_terms(cfg: DictConfig) -> None:
    """A regulariser needs a model that solves an ODE; STEER's jitter one solved over ``[0, T]``, less than T."""
    model_class = str(_value(cfg, "model._target_")).rsplit(".", 1)[-1]
    weighted = [key for key in TERMS if (_value(cfg, f"regularizer.{key}") or 0) > 0]
    if weighted and model_class not in ODE_MODELS:
        raise ConfigError(
            f"regularizer.{weighted[0]}={_value(cfg, f'regularizer.{weighted[0]}')} regularises an ODE's "
            f"dynamics, and model {model_class} solves none: accepted models: "
            f"{', '.join(ODE_MODELS.values())}; or regularizer=none"
        )
    jitter = _value(cfg, "train.end_time_jitter") or 0
    if not jitter:
        return
    if model_class not in SPAN_MODELS:
        raise ConfigError(
            f"train.end_time_jitter={jitter} moves the end time of a model solved over [0, T], and model "
            f"{model_class} is not one: accepted models: odenet, cnf; or train.end_time_jitter=0"
        )
    end_key = SPAN_MODELS[model_class]
    if jitter >= _value(cfg, end_key):
        raise ConfigError(
            f"train.end_time_jitter={jitter}: accepted values: 0 or more and less than "
            f"{end_key}={_value(cfg, end_key)} (the end time must stay after the start)"
        )


def _check_device(cfg: DictConfig) -> None:
    try:
        resolve_device(str(_value(cfg, "device")))
    except ValueError as error:
        raise ConfigError(f"device={_value(cfg, 'device')!r}: {error}") from None


def _check_data_dir(cfg: DictConfig) -> None:
    """Only datasets read from disk (a ``root`` key) use ``data_dir``: it must hold the files, or be creatable
    when the dataset may download."""
    if _value(cfg, "dataset.root") is None:
        return
    path = Path(str(cfg.dataset.root))
    if _value(cfg, "dataset.download"):
        existing = next(p for p in [path, *path.absolute().parents] if p.exists())
        if not os.access(existing, os.W_OK):
            raise ConfigError(
                f"data_dir={str(path)!r}: {existing} cannot be written, so the download has nowhere "
                "to go; accepted values: a writable folder"
            )
    elif missing_files(path):
        raise ConfigError(
            f"data_dir={str(path)!r}: {path.absolute() / 'MNIST' / 'raw'} lacks "
            f"{', '.join(missing_files(path))}; accepted values: a data_dir holding MNIST/raw with the four "
            "gunzipped MNIST files, or dataset.download=true to fetch them there (dataset=mnist5k needs "
            "no files)"
        )


def _check_resume(cfg: DictConfig) -> None:
    setting = _value(cfg, "resume")
    if setting is None or setting == "auto":
        return
    try:
        find_checkpoint(str(setting))
    except FileNotFoundError:
        raise ConfigError(
            f"resume={str(setting)!r}: no checkpoint there; accepted values: a checkpoint file, a run "
            "directory holding checkpoint.pt, auto, or null"
        ) from None
