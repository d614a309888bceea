"""Hydra's side of `noderun train`: a run's config (a resumed run's own), its exit status, the value a
sweeper optimises."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .failures import Interrupted, StopTraining
from .folders import undo_launch
from .resumed import resumed_config
from .run import run

log = logging.getLogger("noderun")


def run_status(cfg) -> tuple[int, dict | None]:
    """Run once; the exit status it earns and its summary (``None`` unless it completed). A refused run
    leaves its folder as it found it. Stop signals are re-raised so that a sweep stops too."""
    folder = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    try:
        return 0, run(launch_config(cfg))
    except ConfigError as error:
        log.error(f"config: {error}")
        if folder is not None:
            undo_launch(folder)
        return 2, None
    except Interrupted as error:
        log.warning(str(error))
        raise SystemExit(128 + error.signum) from None
    except StopTraining as error:
        log.error(f"{error.status}: {error}")
        return 1, None
    except Exception:
        log.exception("the run failed")
        return 1, None


def launch_config(cfg: DictConfig) -> DictConfig:
    """The config to run: with ``resume=RUN_DIR``, that run's own config with the command line's overrides on
    top, recorded as this run's ``.hydra/config.yaml`` (what a later resume from this run composes)."""
    if not HydraConfig.initialized():
        return cfg
    hydra = HydraConfig.get()
    resumed = resumed_config(cfg, list(hydra.overrides.task))
    if resumed is not cfg and hydra.output_subdir is not None:
        OmegaConf.save(resumed, Path(hydra.runtime.output_dir) / hydra.output_subdir / "config.yaml")
    return resumed


def objective(cfg, summary: dict | None) -> float:
    """What a sweeper optimises: the summary's ``cfg.objective`` (default: the task's headline metric);
    for a run that did not complete, the worst value there is (optuna refuses NaN)."""
    direction = HydraConfig.get().sweeper.get("direction") if HydraConfig.initialized() else None
    worst = float("-inf") if direction == "maximize" else float("inf")
    summary = summary or {}
    value = summary.get(cfg.objective or summary.get("headline"))
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else worst
