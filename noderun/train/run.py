"""``run(cfg)``: one training run from a composed config to its summary.json. Hydra only wraps it."""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..log.console import console, summary_table
from ..log.files import METRICS_NAME, SUMMARY_NAME, MetricsWriter, read_metrics, write_json_atomic
from ..log.precision import rounded
from ..models.ode_block import ode_blocks
from ..report import flatten
from ..solvers.settings import SolverSettings
from . import distributed
from .build import build_model, build_task, regularization
from .checkpoint import CHECKPOINT_NAME, check_matches, find_checkpoint, load_checkpoint
from .device import hydra_launcher, resolve_device, torch_threads
from .failures import FailurePolicy, StopTraining
from .failures import describe as describe_failure
from .folders import claim
from .loop import REGULARIZER_STATS, REQUIRED_STATE_KEYS, Trainer, TrainSettings
from .validate import validate_config

log = logging.getLogger("noderun")

SUMMARY_KEYS = [
    "status",
    "task",
    "dataset",
    "model",
    "solver",
    "grad",
    "params",
    "epochs",
    "steps",
    "test_error",
    "test_accuracy",
    "nfe_forward",
    "nfe_backward",
    "forward_s",
    "backward_s",
    "peak_memory_mb",
    "saved_tensors_mb",
    "peak_rss_mb",
    "epoch_time_s",
    "wall_time_s",
    "output_dir",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def component_name(cfg: DictConfig, group: str) -> str:
    """A config group's choice as the config names it (``model=latent_ode``: ``latent_ode``), read from Hydra;
    without Hydra (``run(cfg)`` called directly), named by its class: ``noderun.models.odenet.ODENet`` →
    ``odenet``."""
    from hydra.core.hydra_config import HydraConfig

    choice = HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None
    return choice or str(cfg[group]["_target_"]).rsplit(".", 1)[-1].lower()


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says, writing metrics, checkpoints and summary.json (its numbers rounded for people)
    into ``output_dir`` (default: Hydra's output directory). Returns the summary of a completed run, at full
    precision; otherwise writes the summary with its status (``failed``, ``diverged``, ``interrupted``) and
    raises: ``ConfigError`` before anything is built or written (a bad value, an unreadable checkpoint, a
    folder holding another run), ``StopTraining`` for a batch the failure policy could not save or a run that
    ends without a trained batch or a finite test metric, ``Interrupted`` after a stop signal, or the error
    itself."""
    validate_config(cfg)
    device = resolve_device(cfg.device)
    processes = distributed.start(cfg.train.distributed, device)
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    output_dir = Path(processes.broadcast(str(output_dir)))  # one run directory, process 0's
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = resume_source(cfg.resume, output_dir)
    checkpoint = load_checkpoint(source) if source is not None else None
    refusal = processes.broadcast(claim(output_dir, cfg.resume) if processes.main else None)
    if refusal is not None:
        raise ConfigError(refusal)
    summary = describe(cfg, output_dir, source, device)
    threads = torch_threads(cfg.threads, hydra_launcher())
    if threads is not None:
        torch.set_num_threads(threads)
    summary.update(threads=torch.get_num_threads(), processes=processes.world_size)
    if not processes.main:
        log.setLevel(logging.WARNING)  # one process reports
    log.info(f"run folder {output_dir}")
    writer = MetricsWriter(output_dir, enabled=processes.main)
    trainer = None
    try:
        trainer = build_trainer(cfg, output_dir, writer, processes, source, checkpoint)
        summary["params"] = sum(p.numel() for p in trainer.model.parameters())
        if not ode_blocks(trainer.model):  # no ODE is solved: the solver settings do not apply
            summary.update(solver=None, grad=None, rtol=None, atol=None, step_size=None)
        record = trainer.fit() or last_record(output_dir)  # a finished run resumed: nothing left to train
        summary.update(final_metrics(record, trainer))
        check_outcome(record, trainer)
        summary["status"] = "completed"
    except BaseException as error:
        if trainer is not None and trainer.last_record:  # what the finished epochs measured is kept
            summary.update(final_metrics(trainer.last_record, trainer))
        summary.update(
            status=stop_status(error),
            error=describe_failure(error),
            steps=trainer.state.step if trainer is not None else 0,
        )
        raise
    finally:
        summary["wall_time_s"] = time.perf_counter() - started
        distributed.stop()
        if processes.main:
            write_json_atomic(output_dir / SUMMARY_NAME, rounded(summary))
        write_hparams(writer, cfg, summary)
        writer.close()
    if processes.main:
        headline = summary.get("headline")
        console.print(
            summary_table(
                summary, SUMMARY_KEYS + ([headline] if headline is not None and headline not in SUMMARY_KEYS else [])
            )
        )
    return summary


HPARAM_GROUPS = ("model", "dataset", "solver", "grad", "optimizer", "regularizer", "train")
HPARAM_METRICS = ("nfe_forward", "nfe_backward", "epoch_time_s", "wall_time_s", "saved_tensors_mb")


def tensorboard_hparams(config: dict[str, Any], summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """For TensorBoard's HParams view: the config's single values (numbers, strings, booleans) of the groups
    that define a run (not Hydra's ``_target_``, ``_partial_``), the seed and the components' names; and the
    summary's finite test metrics and costs."""
    groups = flatten({group: config[group] for group in HPARAM_GROUPS if isinstance(config.get(group), dict)})
    hparams: dict[str, Any] = {
        key: value
        for key, value in groups.items()
        if isinstance(value, (bool, int, float, str)) and not key.rsplit(".", 1)[-1].startswith("_")  # Hydra's own
    }
    hparams.update({key: summary[key] for key in ("task", "dataset", "model") if isinstance(summary.get(key), str)})
    hparams["seed"] = config.get("seed")
    metrics = {key: value for key, value in summary.items() if key.startswith("test_") or key in HPARAM_METRICS}
    return hparams, {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def write_hparams(writer: MetricsWriter, cfg: DictConfig, summary: dict[str, Any]) -> None:
    """The HParams record of the run; a failure to write it is a warning (the summary is written already)."""
    try:
        writer.write_hparams(
            *tensorboard_hparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)), summary)
        )
    except Exception as error:  # TensorBoard's writer: nothing of the run may be lost to it
        log.warning(f"the TensorBoard HParams record was not written: {type(error).__name__}: {error}")


def check_outcome(record: dict[str, Any], trainer: Trainer) -> None:
    """``StopTraining`` unless the run trained a batch and ends with a finite headline metric: ``failed`` when
    every batch or the last evaluation was skipped, ``diverged`` when the metric is NaN or infinite."""
    headline, value = trainer.task.headline, record.get(trainer.task.headline)
    if trainer.state.step == trainer.state.skipped_batches:
        raise StopTraining(
            "failed", f"no batch trained: all {trainer.state.step} were skipped (train.on_solver_error=skip)"
        )
    if value is None:
        skipped = record.get("test_skipped")
        raise StopTraining(
            "failed", f"no {headline} from the last evaluation" + (f" (skipped: {skipped})" if skipped else "")
        )
    if not (isinstance(value, (int, float)) and math.isfinite(value)):  # metrics.jsonl writes NaN as "nan"
        raise StopTraining("diverged", f"the final {headline} is {value}")


def last_record(output_dir: Path) -> dict[str, Any]:
    """The last line of the run's metrics.jsonl (carried over from the run it resumed), or ``{}``."""
    records = read_metrics(output_dir)
    return records[-1] if records else {}


def stop_status(error: BaseException) -> str:
    if isinstance(error, StopTraining):
        return error.status
    return "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "failed"


def describe(
    cfg: DictConfig, output_dir: Path, resumed_from: str | Path | None, device: torch.device
) -> dict[str, Any]:
    return {
        "status": "running",
        "task": component_name(cfg, "task"),
        "dataset": component_name(cfg, "dataset"),
        "model": component_name(cfg, "model"),
        "solver": cfg.solver.method,
        "grad": cfg.grad.mode,
        "regularizer": regularization(cfg).name,
        "rtol": cfg.solver.get("rtol"),
        "atol": cfg.solver.get("atol"),
        "step_size": cfg.solver.get("step_size"),
        "seed": cfg.seed,
        "device": str(device),  # the one used (device=auto names none)
        "output_dir": str(output_dir),
        "resumed_from": None if resumed_from is None else str(resumed_from),
    }


def build_trainer(
    cfg: DictConfig,
    output_dir: Path,
    writer: MetricsWriter,
    processes: distributed.Processes = distributed.Processes(),
    resume_from: str | Path | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> Trainer:
    """The trainer ``cfg`` describes (data, model, task, optimiser, schedule, failure policy), continuing from
    the checkpoint at ``resume_from`` when given (``checkpoint``: that checkpoint, when already loaded)."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and processes.active:
        device = torch.device(processes.device)  # this process's own GPU
    data = instantiate(cfg.dataset).load()
    model = build_model(cfg, data.info).to(device)
    if processes.active:  # the same initial model everywhere, then each process its own random draws
        seed_everything(cfg.seed + 1_000_003 * processes.rank)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.train.lr_milestones), gamma=cfg.train.lr_gamma
    )
    settings = TrainSettings(
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        test_batch_size=cfg.train.test_batch_size,
        max_iters=cfg.train.max_iters,
        seed=cfg.seed,
        progress=cfg.train.progress,
        log_every=cfg.log.every_steps,
        keep_checkpoints=cfg.train.keep_checkpoints,
        policy=failure_policy(cfg),
    )
    trainer = Trainer(
        model,
        build_task(cfg, data.info),
        optimizer,
        scheduler,
        data,
        device,
        settings,
        writer,
        output_dir,
        cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)),
        processes,
    )
    if resume_from is not None:
        resume(trainer, resume_from, output_dir, checkpoint)
    return trainer


def failure_policy(cfg: DictConfig) -> FailurePolicy:
    action = cfg.train.on_solver_error
    fallback = SolverSettings.from_config(cfg.train.fallback, cfg.grad) if action == "fallback" else None
    return FailurePolicy(action=action, fallback=fallback, max_bad_batches=cfg.train.max_bad_batches)


def resume_source(setting: str | None, output_dir: Path) -> str | Path | None:
    """What ``resume=`` points at: a path, or with ``auto`` this run's own directory when it holds a
    checkpoint (a requeued job picking up where it stopped)."""
    if setting == "auto":
        return output_dir if (output_dir / CHECKPOINT_NAME).exists() else None
    return setting or None


def resume(
    trainer: Trainer, path_or_dir: str | Path, output_dir: Path, checkpoint: dict[str, Any] | None = None
) -> None:
    """Restore model, optimiser, schedule, position and random states; carry the earlier metrics over.
    A checkpoint that does not match this run is refused before anything is loaded."""
    checkpoint = load_checkpoint(path_or_dir) if checkpoint is None else checkpoint
    check_matches(checkpoint, trainer.model, trainer.config, path_or_dir, REQUIRED_STATE_KEYS)
    try:
        trainer.load_state_dict(checkpoint)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise ValueError(
            f"resume={path_or_dir}: the checkpoint does not match this run's model and optimiser ({error})"
        ) from error
    earlier_metrics = find_checkpoint(path_or_dir).parent / METRICS_NAME
    if (
        trainer.processes.main
        and earlier_metrics.exists()
        and earlier_metrics.resolve() != (output_dir / METRICS_NAME).resolve()
    ):
        shutil.copyfile(earlier_metrics, output_dir / METRICS_NAME)
    log.info(f"resumed from {path_or_dir} at epoch {trainer.state.epoch}, step {trainer.state.step}")


def final_metrics(record: dict[str, Any], trainer: Trainer) -> dict[str, Any]:
    """The summary's numbers: the last evaluation and the last epoch's per-iteration means."""
    headline = trainer.task.headline
    metrics = {key: value for key, value in record.items() if key.startswith("test_")}
    metrics.update(skipped_batches=trainer.state.skipped_batches, fallback_batches=trainer.state.fallback_batches)
    if trainer.state.fallback_batches or record.get("test_fallback"):
        fallback = trainer.config["train"]["fallback"]
        metrics["fallback_solver"] = " ".join(f"{key}={value}" for key, value in fallback.items())
    cuda = "cuda_peak_mb" in record
    metrics.update(
        headline=headline,
        epochs=trainer.state.epoch,
        steps=trainer.state.step,
        train_loss=record.get("train_loss"),
        nfe_forward=record.get("nfe_forward_mean"),
        nfe_backward=record.get("nfe_backward_mean"),
        forward_s=record.get("forward_s_mean"),
        backward_s=record.get("backward_s_mean"),
        saved_tensors_mb=record.get("saved_tensors_mb"),
        peak_rss_mb=record.get("peak_rss_mb"),
        peak_memory_mb=record["cuda_peak_mb"] if cuda else record.get("saved_tensors_mb"),
        peak_memory_kind="cuda_max_memory_allocated" if cuda else "saved_tensors",
        epoch_time_s=(
            sum(trainer.epoch_times) / len(trainer.epoch_times) if trainer.epoch_times else record.get("epoch_time_s")
        ),
    )
    metrics.update({key: record[f"{key}_mean"] for key in REGULARIZER_STATS if f"{key}_mean" in record})
    return metrics
