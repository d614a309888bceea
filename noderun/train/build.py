"""Building a model and a task from a config: runtime values (data shape, classes, a target density)
are passed to the classes that take them, never written back."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ..models.ode_block import ode_blocks
from ..models.regularize import Regularization
from ..solvers.settings import SolverSettings
from ..tasks import Task


def instantiate_with(node: DictConfig, runtime: dict[str, Any]) -> Any:
    """``node`` instantiated with those of the ``runtime`` values that its class takes."""
    factory = instantiate(node, _partial_=True)
    accepted = inspect.signature(factory.func).parameters
    return factory(**{key: value for key, value in runtime.items() if key in accepted})


def build_model(cfg: DictConfig, info: dict[str, Any]) -> nn.Module:
    """``cfg.model`` with the data's runtime facts that it takes (``DataSplits.info``); models that
    solve ODEs (a ``solver`` argument) get the settings of ``cfg.solver`` and ``cfg.grad``, and their ODE
    blocks the training-time ``cfg.regularizer`` and ``cfg.train.end_time_jitter`` (absent from configs saved
    before they existed: none)."""
    model = instantiate_with(cfg.model, {**info, "solver": SolverSettings.from_config(cfg.solver, cfg.grad)})
    for block in ode_blocks(model):
        block.regularization = regularization(cfg)
        block.end_time_jitter = cfg.train.get("end_time_jitter", 0.0)
    return model


def regularization(cfg: DictConfig) -> Regularization:
    """``cfg.regularizer``'s weights and noise (none in a config saved before the group existed)."""
    regularizer = cfg.get("regularizer")
    return Regularization(**regularizer) if regularizer is not None else Regularization()


def build_task(cfg: DictConfig, info: dict[str, Any]) -> Task:
    """``cfg.task`` with the data's runtime facts that it takes (e.g. a target ``log_density``)."""
    return instantiate_with(cfg.task, info)
