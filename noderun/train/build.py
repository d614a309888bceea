"""Building a model from a config: runtime values (data shape, classes) are passed, never written back."""
from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ..models.ode_block import SolverSettings


def build_model(cfg: DictConfig, info: dict[str, Any]) -> nn.Module:
    """``cfg.model`` with the data's runtime facts that it takes (``DataSplits.info``); models that
    solve ODEs (a ``solver`` argument) also get the settings of ``cfg.solver`` and ``cfg.grad``."""
    factory = instantiate(cfg.model, _partial_=True)
    accepted = inspect.signature(factory.func).parameters
    runtime = {key: value for key, value in info.items() if key in accepted}
    if "solver" in accepted:
        runtime["solver"] = SolverSettings.from_config(cfg.solver, cfg.grad)
    return factory(**runtime)
