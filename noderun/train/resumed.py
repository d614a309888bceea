"""``resume=RUN_DIR``: the run's own config (its ``.hydra/config.yaml``, or the config a bare checkpoint file
carries) with the command line's overrides on top. An override that changes the model, or the data it was
built for, is refused."""

from __future__ import annotations

import copy
from importlib.resources import files
from typing import Any, cast

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..report import flatten
from .checkpoint import find_checkpoint, load_checkpoint

KEPT = ("model", "dataset")  # what the checkpoint's tensors were built for
MOVABLE = ("dataset.root", "dataset.download")  # where the data lives may change
ABSENT = object()


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``cfg`` as Hydra composed it from ``overrides`` (the command line), when ``cfg.resume`` names a run:
    that run's config with the keys ``overrides`` set taken from ``cfg``; else ``cfg`` itself."""
    saved = saved_config(cfg.resume) if cfg.resume not in (None, "auto") else None
    if saved is None:
        return cfg
    composed = OmegaConf.to_container(cfg, resolve=False)
    resumed = copy.deepcopy(saved)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        for key in touched_keys(override):
            value = lookup(composed, key)
            if value is ABSENT:
                delete(resumed, key)
            else:
                OmegaConf.update(resumed, key, copy.deepcopy(value), merge=False, force_add=True)
    resumed.resume = cfg.resume
    check_kept(saved, resumed, cast(str, cfg.resume))  # a run's path: saved_config found its checkpoint
    OmegaConf.set_struct(resumed, OmegaConf.is_struct(cfg))
    return resumed


def with_run_overrides(overrides: list[str]) -> list[str]:
    """The command line of ``noderun train`` with, before it, the overrides the run named by ``resume=`` was
    started with (its ``.hydra/overrides.yaml``) that the command line does not set again: Hydra then composes
    the run's own config groups, so that an override of one of their keys is understood (and, for the model,
    refused by ``resumed_config`` in one line)."""
    resume = [override.split("=", 1)[1] for override in overrides if override.startswith("resume=")]
    if not resume or resume[-1] in ("auto", "null") or any(arg.startswith("-") for arg in overrides):
        return overrides
    try:
        saved_file = find_checkpoint(resume[-1]).parent / ".hydra" / "overrides.yaml"
        given = {override.key_or_group for override in OverridesParser.create().parse_overrides(overrides)}
    except Exception:  # no checkpoint or an override Hydra will refuse: Hydra and the config check say so
        return overrides
    saved = [str(line) for line in OmegaConf.load(saved_file)] if saved_file.is_file() else []
    kept = [
        line
        for line, override in zip(saved, OverridesParser.create().parse_overrides(saved))
        if override.key_or_group not in given and not override.is_hydra_override() and override.key_or_group != "resume"
    ]
    return kept + overrides


def saved_config(source: str) -> DictConfig | None:
    """The config of the run at ``source`` (a run folder or a checkpoint file): the ``.hydra/config.yaml``
    beside its checkpoint, else the checkpoint's own; ``None`` when there is no checkpoint (refused later)."""
    try:
        checkpoint = find_checkpoint(source)
    except FileNotFoundError:
        return None
    hydra_config = checkpoint.parent / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        return cast(DictConfig, OmegaConf.load(hydra_config))  # Hydra writes the config as a mapping
    config = load_checkpoint(checkpoint).get("config")
    return OmegaConf.create(config) if isinstance(config, dict) else None


def touched_keys(override: Override) -> list[str]:
    """The config keys an override sets: its key; for a config group, the group's node, or for an option
    placed at the root (``# @package _global_``, as experiments are), every key the option file sets."""
    key = override.key_or_group
    if override.is_hydra_override() or key == "resume":
        return []
    group = files("noderun.conf") / key
    if not group.is_dir() or override.is_delete():
        return [key]
    option = group / f"{override.value()}.yaml"
    text = option.read_text() if option.is_file() else ""
    if not text.startswith("# @package _global_"):
        return [key.replace("/", ".")]
    content = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.create(text), resolve=False))  # a mapping
    groups = [
        next(iter(entry)).removeprefix("override /") for entry in content.pop("defaults", []) if isinstance(entry, dict)
    ]  # `- override /dataset: spirals`
    return [group.replace("/", ".") for group in groups] + list(flatten(content))


def lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return ABSENT
        tree = tree[part]
    return tree


def delete(config: DictConfig, key: str) -> None:
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    if isinstance(node, DictConfig) and name in node:
        del node[name]


def check_kept(saved: DictConfig, resumed: DictConfig, source: str) -> None:
    """``ConfigError`` naming the first model or dataset key that differs from the run's."""
    for section in KEPT:
        before = flatten({section: cast(dict, OmegaConf.to_container(saved, resolve=False)).get(section) or {}})
        after = flatten({section: cast(dict, OmegaConf.to_container(resumed, resolve=False)).get(section) or {}})
        for key in sorted(before.keys() | after.keys()):
            if key not in MOVABLE and before.get(key) != after.get(key):
                raise ConfigError(
                    f"resume={source}: {key}={after.get(key)!r} differs from the run's "
                    f"{before.get(key)!r}; a resumed run keeps the model and the data it was built "
                    f"for: accepted values: overrides of other keys (start a new run to change {key})"
                )
