"""What the config schemas (conf/schema.py) refuse, as noderun's one line naming the key and what it accepts:
keys the schemas do not declare, and Hydra's and OmegaConf's errors while composing (an unknown key, a value
of the wrong type, an unknown group option)."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def accepted_type(hint: Any) -> str:
    """A schema's type in words: ``Optional[int]`` → ``an integer or null``."""
    args = typing.get_args(hint)
    if type(None) in args:
        return accepted_type(next(arg for arg in args if arg is not type(None))) + " or null"
    if typing.get_origin(hint) is list:
        return f"a list, each {accepted_type(args[0])}"
    return TYPE_NAMES.get(hint, "a value of its type")


def unknown_key(full_key: str, accepted: list[str]) -> str:
    """``train.epoch: unknown key (did you mean train.epochs?); accepted keys: epochs, ...``."""
    parent, _, key = full_key.rpartition(".")
    close = difflib.get_close_matches(key, accepted, n=1)
    guess = f" (did you mean {'.'.join(filter(None, [parent, close[0]]))}?)" if close else ""
    return f"{full_key}: unknown key{guess}; accepted keys: {', '.join(accepted)}"


def undeclared_keys(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """Each key of ``node`` (and below) that its schema does not declare (one added by ``+key=`` or
    ``++key=``), with the keys the schema declares. Nodes without a schema (``train.fallback``) are open."""
    schema = OmegaConf.get_type(node)
    declared = [field.name for field in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
    for key in node:
        full_key = f"{prefix}{key}"
        if declared is not None and key not in declared:
            yield full_key, declared
        elif isinstance(node[key], DictConfig):
            yield from undeclared_keys(node[key], f"{full_key}.")


def composition_refusal(error: Exception) -> str:
    """One line for an error Hydra raised while composing the config."""
    if isinstance(error, MissingConfigException) and error.options:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        return f"{group}={name}: accepted values: {', '.join(error.options)}"
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        return _omegaconf_refusal(cause)
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def swept_groups_hint(refusal: str, overrides: list[str]) -> str:
    """What to add to an unknown-key refusal of a multirun that sweeps config groups (``experiment=a,b``): Hydra
    composes a multirun's config once before applying any swept override, so a key that only a swept option
    declares (``dataset.train_future`` of the spirals an experiment brings) is unknown in that composition."""
    if "unknown key" not in refusal or not {"-m", "--multirun"} & set(overrides):
        return ""
    groups = files("noderun.conf")
    swept = [
        key for key, _, value in (item.partition("=") for item in overrides) if "," in value and (groups / key).is_dir()
    ]
    if not swept:
        return ""
    return (
        f" (a multirun composes once before its sweep over {', '.join(swept)}: a key that only a swept option "
        "declares needs that option named too, as in `dataset=spirals dataset.train_future=true`)"
    )


def _omegaconf_refusal(error: OmegaConfBaseException) -> str:
    schema, key = error.object_type, error.key
    assert error.full_key is not None  # composition_refusal passes only errors with a full_key
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        if dataclasses.is_dataclass(schema):
            return unknown_key(error.full_key, [field.name for field in dataclasses.fields(schema)])
        return f"{error.full_key}: unknown key; this node takes keys added with +{error.full_key}=VALUE"
    if isinstance(error, ValidationError):
        items = typing.get_args(error.ref_type)  # a list's item: List[int] → int
        hint = typing.get_type_hints(schema).get(key) if dataclasses.is_dataclass(schema) else next(iter(items), None)
        if hint is not None:
            shown = "null" if error.value is None else repr(error.value)
            return f"{error.full_key}={shown}: accepted values: {accepted_type(hint)}"
    return f"{error.full_key}: {str(error.msg).splitlines()[0]}"


def output_dir_refusal(error: OSError, multirun: bool) -> str:
    """One line for a run (or sweep) folder that cannot be created or written."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    return (
        f"{key}: cannot create or write {error.filename} ({error.strerror}); accepted values: a folder that "
        "can be created and written"
    )
