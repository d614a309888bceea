"""Solver options: the user's ``rtol``, ``atol`` and ``options`` dict, validated once into a typed form.

Every refusal is a ``SettingError`` carrying the offending key; its message names the key as the
caller knows it (``Names``): ``options['step_size']`` for ``odeint``, ``solver.step_size`` for a config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from .method import SolveMethod, StepMethod
from .tableau import ButcherTableau

Method = Union[ButcherTableau, StepMethod, SolveMethod]

FIXED_STEP_KEYS = ("step_size", "compile")
ADAPTIVE_KEYS = ("first_step", "max_num_steps", "norm", "safety", "ifactor", "dfactor", "beta", "per_sample", "compile")
FORWARD_ONLY_KEYS = ("norm", "per_sample", "compile")  # not carried over to the adjoint's backward solve
NORM_NAMES = ("rms", "seminorm")
DEFAULT_MAX_NUM_STEPS = 10_000
MAX_BETA = 0.1  # the PI controller's integral weight; above it, tiny errors can shrink an accepted step
TOP_LEVEL_KEYS = ("method", "rtol", "atol", "grad")  # odeint keywords; every other key is an options key


class SettingError(ValueError):
    """A solver setting no solve can use. ``key`` is the offending setting (``"rtol"``, ``"step_size"``,
    ``"method"``, ``"grad"``; ``None`` for unknown keys), and the message names it as the caller does."""

    def __init__(self, message: str, key: str | None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Names:
    """How a setting is named in messages: ``odeint``'s arguments (``scope`` ``options`` or
    ``adjoint_options``) or, with ``config``, the keys of a config node (``scope`` ``solver``)."""

    scope: str = "options"
    config: bool = False

    def __call__(self, key: str) -> str:
        if self.config:
            return "grad.mode" if key == "grad" else f"{self.scope}.{key}"
        if key in TOP_LEVEL_KEYS:
            return f"adjoint_{key}" if self.scope == "adjoint_options" else key
        return f"{self.scope}[{key!r}]"


@dataclass(frozen=True)
class SolverOptions:
    """Everything the integration loop needs besides the function, the state and the times.

    ``norm`` is ``None`` (the default norm), ``"rms"``, ``"seminorm"`` (adjoint only) or a
    callable mapping a tensor of scaled errors to a scalar tensor. ``per_sample`` gives every
    sample (dim 0 of the state) its own clock and step size. ``compile`` runs each step as one
    ``torch.compile``d graph, ``func`` included (``solvers.fused``).
    """

    tableau: Method
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
    method_options: Mapping[str, Any] = field(default_factory=dict)  # the method's own keys (``option_keys``)


def accepted_keys(method: Method) -> tuple[str, ...]:
    """The option keys ``method`` accepts."""
    if isinstance(method, SolveMethod):
        return method.option_keys
    if isinstance(method, StepMethod):
        return FIXED_STEP_KEYS + method.option_keys
    return ADAPTIVE_KEYS if method.adaptive else FIXED_STEP_KEYS


def is_positive(value: Any, integer: bool = False) -> bool:
    """A finite positive number (an integer when ``integer``); booleans are not numbers here."""
    kinds = (int,) if integer else (int, float)
    return not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value) and value > 0


def carried_to_backward(options: Mapping[str, Any]) -> dict[str, Any]:
    """The forward options the adjoint's backward solve inherits when it is given none of its own."""
    return {key: value for key, value in options.items() if key not in FORWARD_ONLY_KEYS}


def parse_options(tableau: Method, rtol: Any, atol: Any, options: Mapping[str, Any] | None,
                  *, backward: bool = False, names: Names = Names()) -> SolverOptions:
    """Validate the user's settings for ``tableau``; ``SettingError`` naming what is wrong otherwise.

    ``backward``: the settings of the adjoint's backward solve (seminorm allowed, per_sample refused).
    """
    rtol, atol = _as_float(rtol), _as_float(atol)
    _positive_number(names, "rtol", rtol)
    _positive_number(names, "atol", atol)
    options = dict(options or {})
    accepted = accepted_keys(tableau)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        kind = ("adaptive " if tableau.adaptive else "fixed-step ") if isinstance(tableau, ButcherTableau) else ""
        raise SettingError(f"unknown {names.scope} key(s) {unknown} for the {kind}method {tableau.name!r}; "
                           f"accepted keys: {', '.join(accepted)}", None)
    for key in ("step_size", "first_step", "safety", "ifactor", "dfactor"):
        if key in options and (options[key] is not None or key not in ("step_size", "first_step")):
            _positive_number(names, key, options[key])
    if options.get("dfactor", 0) >= 1:
        raise SettingError(f"{names('dfactor')} must be below 1, got {options['dfactor']!r}", "dfactor")
    if "beta" in options:
        _check_beta(names, options["beta"])
    if "max_num_steps" in options:
        _positive_number(names, "max_num_steps", options["max_num_steps"], integer=True)
    _check_norm(names, options.get("norm"), backward)
    _check_flags(names, options, backward)
    if options.get("compile") and not isinstance(tableau, ButcherTableau):
        raise SettingError(f"{names('compile')} compiles explicit Runge–Kutta steps; {tableau.name!r} takes its "
                           f"own steps: drop {names('compile')}", "compile")
    own = getattr(tableau, "option_keys", ())
    method_options = {key: options.pop(key) for key in own if key in options}
    if own:
        tableau.check_options(method_options, names)
    return SolverOptions(tableau=tableau, rtol=rtol, atol=atol, method_options=method_options, **options)


def _positive_number(names: Names, key: str, value: Any, integer: bool = False) -> None:
    if not is_positive(value, integer):
        kind = "integer" if integer else "number"
        raise SettingError(f"{names(key)} must be a finite positive {kind}, got {value!r}", key)


def _check_beta(names: Names, beta: Any) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= MAX_BETA:
        raise SettingError(f"{names('beta')} must be a number from 0 (integral control) to {MAX_BETA}, "
                           f"got {beta!r}", "beta")


def _check_norm(names: Names, norm: Any, backward: bool) -> None:
    if norm is None or callable(norm):
        return
    if norm == "seminorm" and not backward:
        raise SettingError(f"{names('norm')}='seminorm' applies to the adjoint's backward pass: pass it in "
                           "adjoint_options", "norm")
    if norm not in NORM_NAMES:
        raise SettingError(f"unknown norm {names('norm')}={norm!r}; use 'rms', 'seminorm' (adjoint only) or "
                           "a callable", "norm")


def _check_flags(names: Names, options: Mapping[str, Any], backward: bool) -> None:
    """``per_sample`` and ``compile``: booleans, forward only, not together."""
    for key in ("per_sample", "compile"):
        if not isinstance(options.get(key, False), bool):
            raise SettingError(f"{names(key)} must be True or False, got {options[key]!r}", key)
    per_sample, compiled = options.get("per_sample", False), options.get("compile", False)
    if per_sample and backward:
        raise SettingError(f"{names('per_sample')} applies to the forward solve: the adjoint's backward state "
                           "is not batched", "per_sample")
    if per_sample and options.get("norm") is not None:
        raise SettingError(f"{names('per_sample')} measures each sample's error by its RMS norm; drop "
                           f"{names('norm')}", "norm")
    if compiled and backward:
        raise SettingError(f"{names('compile')}: compile applies to the forward solve; the adjoint's backward "
                           "dynamics call autograd, which torch.compile cannot trace into one graph", "compile")
    if compiled and per_sample:
        raise SettingError(f"{names('compile')} works with a shared step size; drop {names('per_sample')}",
                           "compile")


def _as_float(value: Any) -> Any:
    """A Python float for numbers and one-element tensors; anything else unchanged (to be rejected)."""
    if hasattr(value, "numel") and value.numel() == 1:
        return float(value)
    return value
