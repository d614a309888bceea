"""Building a model and a task from a config: runtime values (data shape, classes, a target density)
are passed to the classes that take them, never written back."""
from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ..solvers.settings import SolverSettings
from ..tasks import Task


def instantiate_with(node: DictConfig, runtime: dict[str, Any]) -> Any:
    """``node`` instantiated with those of the ``runtime`` values that its class takes."""
    factory = instantiate(node, _partial_=True)
    accepted = inspect.signature(factory.func).parameters
    return factory(**{key: value for key, value in runtime.items() if key in accepted})


def build_model(cfg: DictConfig, info: dict[str, Any]) -> nn.Module:
    """``cfg.model`` with the data's runtime facts that it takes (``DataSplits.info``); models that
    solve ODEs (a ``solver`` argument) get the settings of ``cfg.solver`` and ``cfg.grad``."""
    return instantiate_with(cfg.model, {**info, "solver": SolverSettings.from_config(cfg.solver, cfg.grad)})


def build_task(cfg: DictConfig, info: dict[str, Any]) -> Task:
    """``cfg.task`` with the data's runtime facts that it takes (e.g. a target ``log_density``)."""
    return instantiate_with(cfg.task, info)
