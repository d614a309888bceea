"""Solver settings: the user's ``rtol``, ``atol`` and ``options`` dict, validated once into a typed form."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .tableau import ButcherTableau

FIXED_STEP_KEYS = ("step_size", "compile")
ADAPTIVE_KEYS = ("first_step", "max_num_steps", "norm", "safety", "ifactor", "dfactor", "beta", "per_sample", "compile")
FORWARD_ONLY_KEYS = ("per_sample", "compile")  # not carried over to the adjoint's backward solve
NORM_NAMES = ("rms", "seminorm")
DEFAULT_MAX_NUM_STEPS = 10_000
MAX_BETA = 0.1  # the PI controller's integral weight; above it, tiny errors can shrink an accepted step


@dataclass(frozen=True)
class SolverOptions:
    """Everything the integration loop needs besides the function, the state and the times.

    ``norm`` is ``None`` (the default norm), ``"rms"``, ``"seminorm"`` (adjoint only) or a
    callable mapping a tensor of scaled errors to a scalar tensor. ``per_sample`` gives every
    sample (dim 0 of the state) its own step size (``solvers.per_sample``). ``compile`` runs each step
    as one ``torch.compile``d graph, ``func`` included (``solvers.fused``).
    """

    tableau: ButcherTableau
    rtol: float
    atol: float
    step_size: float | None = None
    first_step: float | None = None
    max_num_steps: int = DEFAULT_MAX_NUM_STEPS
    norm: str | Callable | None = None
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0
    per_sample: bool = False
    compile: bool = False


def is_positive(value: Any, integer: bool = False) -> bool:
    """A finite positive number (an integer when ``integer``); booleans are not numbers here."""
    kinds = (int,) if integer else (int, float)
    return not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value) and value > 0


def _positive_number(name: str, value: Any, integer: bool = False) -> None:
    if not is_positive(value, integer):
        kind = "integer" if integer else "number"
        raise ValueError(f"{name} must be a finite positive {kind}, got {value!r}")


def _check_beta(beta: Any, where: str) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= MAX_BETA:
        raise ValueError(f"{where}['beta'] must be a number from 0 (integral control) to {MAX_BETA}, got {beta!r}")


def _check_norm(norm: Any, backward: bool) -> None:
    if norm is None or callable(norm):
        return
    if norm == "seminorm" and not backward:
        raise ValueError("norm='seminorm' applies to the adjoint's backward pass: pass it in adjoint_options")
    if norm not in NORM_NAMES:
        raise ValueError(f"unknown norm {norm!r}; use 'rms', 'seminorm' (adjoint only) or a callable")


def _check_per_sample(options: Mapping[str, Any], where: str, backward: bool) -> None:
    per_sample = options.get("per_sample", False)
    if not isinstance(per_sample, bool):
        raise ValueError(f"{where}['per_sample'] must be True or False, got {per_sample!r}")
    if per_sample and backward:
        raise ValueError("per_sample applies to the forward solve: the adjoint's backward state is not batched")
    if per_sample and options.get("norm") is not None:
        raise ValueError(f"{where}['per_sample'] measures each sample's error by its RMS norm; drop {where}['norm']")


def _check_compile(options: Mapping[str, Any], where: str, backward: bool) -> None:
    compiled = options.get("compile", False)
    if not isinstance(compiled, bool):
        raise ValueError(f"{where}['compile'] must be True or False, got {compiled!r}")
    if compiled and backward:
        raise ValueError("compile applies to the forward solve: the adjoint's backward dynamics call autograd, "
                         "which torch.compile cannot trace into one graph")
    if compiled and options.get("per_sample", False):
        raise ValueError(f"{where}['compile'] works with a shared step size; drop {where}['per_sample']")


def parse_options(tableau: ButcherTableau, rtol: Any, atol: Any, options: Mapping[str, Any] | None,
                  *, backward: bool = False, where: str = "options") -> SolverOptions:
    """Validate the user's settings for ``tableau``; ``ValueError`` naming what is wrong otherwise.

    ``backward``: the settings of the adjoint's backward solve (seminorm allowed, per_sample refused).
    """
    _positive_number("rtol", _as_float(rtol))
    _positive_number("atol", _as_float(atol))
    options = dict(options or {})
    accepted = ADAPTIVE_KEYS if tableau.adaptive else FIXED_STEP_KEYS
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        kind = "adaptive" if tableau.adaptive else "fixed-step"
        raise ValueError(
            f"unknown {where} key(s) {unknown} for the {kind} method {tableau.name!r}; "
            f"accepted keys: {', '.join(accepted)}"
        )
    for key in ("step_size", "first_step", "safety", "ifactor"):
        if options.get(key) is not None:
            _positive_number(f"{where}[{key!r}]", options[key])
    if "dfactor" in options:
        _positive_number(f"{where}['dfactor']", options["dfactor"])
        if options["dfactor"] >= 1:
            raise ValueError(f"{where}['dfactor'] must be below 1, got {options['dfactor']!r}")
    if "beta" in options:
        _check_beta(options["beta"], where)
    if "max_num_steps" in options:
        _positive_number(f"{where}['max_num_steps']", options["max_num_steps"], integer=True)
    _check_norm(options.get("norm"), backward)
    _check_per_sample(options, where, backward)
    _check_compile(options, where, backward)
    return SolverOptions(tableau=tableau, rtol=_as_float(rtol), atol=_as_float(atol), **options)


def _as_float(value: Any) -> Any:
    """A Python float for numbers and one-element tensors; anything else unchanged (to be rejected)."""
    if hasattr(value, "numel") and value.numel() == 1:
        return float(value)
    return value
