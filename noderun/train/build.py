"""Building a model from a config: runtime values (data shape, classes) are passed, never written back."""
from __future__ import annotations

import inspect

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ..models.ode_block import SolverSettings


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``cfg.model`` with the data's shape; models with ODE blocks also get ``cfg.solver`` and ``cfg.grad``."""
    factory = instantiate(cfg.model, _partial_=True)
    runtime = {"input_shape": input_shape, "num_classes": num_classes}
    if "solver" in inspect.signature(factory.func).parameters:
        runtime["solver"] = SolverSettings.from_config(cfg.solver, cfg.grad)
    return factory(**runtime)
