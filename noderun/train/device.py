"""Choosing the device a run uses and its number of threads."""

from __future__ import annotations

import os
from typing import Any

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {name!r} asked for, but {torch.cuda.device_count()} CUDA device(s) are available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available on this machine")
    return device


def torch_threads(requested: int | None, launcher: Any = None) -> int | None:
    """Threads for this run's torch: ``requested`` when set; else, under a launcher that runs jobs side
    by side, the cores divided among them (joblib's ``n_jobs``, -1 meaning one job per core) or the
    cores a submitit job is given (``cpus_per_task``); else ``None`` (torch's default: every core)."""
    if requested is not None:
        return requested
    cores, launcher = os.cpu_count() or 1, launcher or {}
    n_jobs = launcher.get("n_jobs")
    if n_jobs is not None:
        parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
        return max(1, cores // max(1, parallel))
    return launcher.get("cpus_per_task") or None


def hydra_launcher() -> Any:
    """The launcher config of the Hydra job running now, or ``None`` outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher if HydraConfig.initialized() else None
