"""Solver options: the user's ``rtol``, ``atol`` and ``options`` dict, validated once into a typed form.

Every refusal is a ``SettingError`` carrying the offending key; its message names the key as the
caller knows it (``Names``): ``options['step_size']`` for ``odeint``, ``solver.step_size`` for a config.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .method import SolveMethod, StepMethod
from .tableau import ButcherTableau

Method = ButcherTableau | StepMethod | SolveMethod

FIXED_STEP_KEYS = ("step_size", "grid_constructor", "perturb", "interp", "compile")
EVENT_FIXED_STEP_KEYS = ("max_num_steps",)  # accepted for fixed-step methods in an event solve only
INTERP_NAMES = ("linear", "cubic")  # how a fixed-step event solve interpolates inside the event's step
ADAPTIVE_KEYS = (
    "first_step",
    "max_num_steps",
    "norm",
    "safety",
    "ifactor",
    "dfactor",
    "beta",
    "min_step",
    "max_step",
    "step_t",
    "jump_t",
    "per_sample",
    "compact",
    "compile",
)
FORWARD_ONLY_KEYS = ("norm", "per_sample", "compact", "compile")  # not carried over to the adjoint's backward solve
SHARED_CLOCK_KEYS = ("per_sample", "compact", "compile")  # adaptive keys an adaptive implicit method refuses
NORM_NAMES = ("rms", "seminorm")
DEFAULT_MAX_NUM_STEPS = 100_000
EVENT_FIXED_MAX_NUM_STEPS = 20_000  # a fixed-step event solve's default step budget (torchdiffeq's)
MAX_BETA = 0.1  # the PI controller's integral weight; above it, tiny errors can shrink an accepted step
TOP_LEVEL_KEYS = ("method", "rtol", "atol", "grad")  # odeint keywords; every other key is an options key
CONFIG_KEYS = {"solver": "scipy_method"}  # options keys a config names otherwise (solver.solver would be ambiguous)


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
            return "grad.mode" if key == "grad" else f"{self.scope}.{CONFIG_KEYS.get(key, key)}"
        if key in TOP_LEVEL_KEYS:
            return f"adjoint_{key}" if self.scope == "adjoint_options" else key
        return f"{self.scope}[{key!r}]"


@dataclass(frozen=True)
class SolverOptions:
    """Everything the integration loop needs besides the function, the state and the times.

    ``norm`` is ``None`` (the default norm), ``"rms"``, ``"seminorm"`` (adjoint only) or a
    callable mapping a tensor of scaled errors to a scalar tensor. ``per_sample`` gives every
    sample (dim 0 of the state) its own clock and step size; with ``compact``, the samples that have finished
    leave the batch, and ``func`` is then called on the rows still moving (so it must treat rows alone and hold
    no per-sample data outside the state). ``compile`` runs each step as one
    ``torch.compile``d graph, ``func`` included (``solvers.fused``).

    Fixed-step methods: ``grid_constructor(func, y0, t)`` returns the step end points (a 1-D tensor from
    ``t[0]`` to ``t[-1]``, to which the output times are added); ``perturb`` evaluates ``func`` one
    representable time inside each step at its ends (for dynamics discontinuous at grid points);
    ``interp`` is the interpolant an event solve locates the event on: ``"linear"`` or ``"cubic"`` (Hermite).
    Adaptive methods: ``min_step``/``max_step`` bound the step size (a step of at most ``min_step`` is
    accepted whatever its error); steps end on every time of ``step_t`` and ``jump_t``, and at a time
    of ``jump_t`` (a discontinuity of ``func``) the derivative is evaluated again on the far side.
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
    min_step: float = 0.0
    max_step: float = math.inf
    step_t: tuple[float, ...] = ()
    jump_t: tuple[float, ...] = ()
    grid_constructor: Callable | None = None
    perturb: bool = False
    per_sample: bool = False
    compact: bool = False
    compile: bool = False
    interp: str = "linear"
    method_options: Mapping[str, Any] = field(default_factory=dict)  # the method's own keys (``option_keys``)


def accepted_keys(method: Method, events: bool = False) -> tuple[str, ...]:
    """The option keys ``method`` accepts (``events``: in a solve that runs until an event)."""
    if isinstance(method, SolveMethod):
        return method.option_keys
    if method.adaptive and isinstance(method, StepMethod):
        return tuple(key for key in ADAPTIVE_KEYS if key not in SHARED_CLOCK_KEYS) + method.option_keys
    if method.adaptive:
        return ADAPTIVE_KEYS
    fixed = FIXED_STEP_KEYS + (EVENT_FIXED_STEP_KEYS if events else ())
    return fixed + method.option_keys if isinstance(method, StepMethod) else fixed


def is_positive(value: Any, integer: bool = False) -> bool:
    """A finite positive number (an integer when ``integer``); booleans are not numbers here."""
    kinds = (int,) if integer else (int, float)
    return not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value) and value > 0


def check_count(names: Names, options: Mapping[str, Any], key: str, meaning: str, default: int) -> None:
    """A method's own count option (``max_iters``): a positive integer when given."""
    if key in options and not is_positive(options[key], integer=True):
        raise SettingError(
            f"{names(key)} must be a positive integer ({meaning}; default {default}), got {options[key]!r}", key
        )


def carried_to_backward(options: Mapping[str, Any]) -> dict[str, Any]:
    """The forward options the adjoint's backward solve inherits when it is given none of its own (not
    ``jacobian="batch_diagonal"``: the backward state is not a batch)."""
    return {
        key: value
        for key, value in options.items()
        if key not in FORWARD_ONLY_KEYS and not (key == "jacobian" and value == "batch_diagonal")
    }


def parse_options(
    tableau: Method,
    rtol: Any,
    atol: Any,
    options: Mapping[str, Any] | None,
    *,
    backward: bool = False,
    names: Names = Names(),
    events: bool = False,
) -> SolverOptions:
    """Validate the user's settings for ``tableau``; ``SettingError`` naming what is wrong otherwise.

    ``backward``: the settings of the adjoint's backward solve (seminorm allowed, per_sample refused).
    ``events``: for a solve until an event, where fixed-step methods take a step budget ``max_num_steps``
    (default ``EVENT_FIXED_MAX_NUM_STEPS``).
    """
    rtol, atol = _as_float(rtol), _as_float(atol)
    _positive_number(names, "rtol", rtol)
    _positive_number(names, "atol", atol)
    options = dict(options or {})
    if isinstance(tableau, StepMethod) and tableau.adaptive:
        for key in SHARED_CLOCK_KEYS:
            if key in options and not options[key]:
                del options[key]  # off, as for every method that takes its own steps
            elif key in options:
                raise SettingError(
                    f"{names(key)} applies to explicit Runge–Kutta methods; {tableau.name!r} solves "
                    f"implicit stages with its own Newton iteration: drop {names(key)}",
                    key,
                )
    accepted = accepted_keys(tableau, events)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        kind = ("adaptive " if tableau.adaptive else "fixed-step ") if isinstance(tableau, ButcherTableau) else ""
        hint = (
            "; max_num_steps applies to a fixed-step method only with event_fn"
            if "max_num_steps" in unknown and "max_num_steps" in accepted_keys(tableau, True)
            else ""
        )
        raise SettingError(
            f"unknown {names.scope} key(s) {unknown} for the {kind}method {tableau.name!r}; "
            f"accepted keys: {', '.join(accepted)}{hint}",
            None,
        )
    if events and "max_num_steps" in accepted and not tableau.adaptive:
        options.setdefault("max_num_steps", EVENT_FIXED_MAX_NUM_STEPS)
    grid_keys = [key for key in ("step_t", "jump_t", "grid_constructor") if options.get(key) is not None]
    if events and grid_keys:
        raise SettingError(
            f"{', '.join(map(names, grid_keys))} place steps in a solve with an end time; a solve "
            "until an event (event_fn) takes none of them",
            grid_keys[0],
        )
    if options.get("interp", "linear") not in INTERP_NAMES:
        raise SettingError(f"unknown {names('interp')}={options['interp']!r}; use 'linear' or 'cubic'", "interp")
    for key in ("step_size", "first_step", "safety", "ifactor", "dfactor"):
        if key in options and (options[key] is not None or key not in ("step_size", "first_step")):
            _positive_number(names, key, options[key])
    if options.get("dfactor", 0) >= 1:
        raise SettingError(f"{names('dfactor')} must be below 1, got {options['dfactor']!r}", "dfactor")
    if "beta" in options:
        _check_beta(names, options["beta"])
    if "max_num_steps" in options:
        _positive_number(names, "max_num_steps", options["max_num_steps"], integer=True)
    _check_step_bounds(names, options)
    _check_grid(names, options)
    for key in ("step_t", "jump_t"):
        if key in options:
            options[key] = _times(names, key, options[key])
    if set(options.get("step_t", ())) & set(options.get("jump_t", ())):
        raise SettingError(
            f"{names('step_t')} and {names('jump_t')} share times "
            f"{sorted(set(options['step_t']) & set(options['jump_t']))}: give each time once "
            "(a time of jump_t is also stepped on)",
            "jump_t",
        )
    _check_norm(names, options.get("norm"), backward)
    _check_flags(names, options, backward)
    if options.get("compile") and not isinstance(tableau, ButcherTableau):
        raise SettingError(
            f"{names('compile')} compiles explicit Runge–Kutta steps; {tableau.name!r} takes its "
            f"own steps: drop {names('compile')}",
            "compile",
        )
    if backward and options.get("jacobian") == "batch_diagonal":
        raise SettingError(
            f"{names('jacobian')}='batch_diagonal' takes one block per sample; the adjoint's backward "
            "state (the state, its adjoint and the parameter gradients) is not a batch: use 'dense'",
            "jacobian",
        )
    own = getattr(tableau, "option_keys", ())
    method_options = {key: options.pop(key) for key in own if key in options}
    if own and not isinstance(tableau, ButcherTableau):  # a tableau has no option keys
        tableau.check_options(method_options, names)
    return SolverOptions(tableau=tableau, rtol=rtol, atol=atol, method_options=method_options, **options)


def _positive_number(names: Names, key: str, value: Any, integer: bool = False) -> None:
    if not is_positive(value, integer):
        kind = "integer" if integer else "number"
        raise SettingError(f"{names(key)} must be a finite positive {kind}, got {value!r}", key)


def _check_step_bounds(names: Names, options: dict) -> None:
    """``min_step`` (default 0) and ``max_step`` (default inf): ``0 <= min_step <= max_step``, ``min_step``
    finite and ``max_step`` positive."""
    low, high = options.get("min_step", 0.0), options.get("max_step", math.inf)
    for key, value, rule in (
        ("min_step", low, "a finite number of at least 0"),
        ("max_step", high, "a positive number (inf: no bound)"),
    ):
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
        if not number or (key == "min_step" and not 0 <= value < math.inf) or (key == "max_step" and value <= 0):
            raise SettingError(f"{names(key)} must be {rule}, got {value!r}", key)
    if low > high:
        raise SettingError(f"{names('min_step')}={low!r} is above {names('max_step')}={high!r}", "min_step")


def _check_grid(names: Names, options: dict) -> None:
    """``grid_constructor``: a callable, not with ``step_size``; ``perturb``: a boolean."""
    grid = options.get("grid_constructor")
    if grid is not None and not callable(grid):
        raise SettingError(
            f"{names('grid_constructor')} must be a callable (func, y0, t) -> grid, got {type(grid).__name__}",
            "grid_constructor",
        )
    if grid is not None and options.get("step_size") is not None:
        raise SettingError(
            f"{names('step_size')} and {names('grid_constructor')} both set the grid: give one", "grid_constructor"
        )
    if not isinstance(options.get("perturb", False), bool):
        raise SettingError(f"{names('perturb')} must be True or False, got {options['perturb']!r}", "perturb")


def _times(names: Names, key: str, value: Any) -> tuple[float, ...]:
    """``step_t``/``jump_t`` (a 1-D tensor or a sequence of numbers) as sorted, distinct, finite floats."""
    try:
        times = [float(x) for x in (value.detach().cpu().reshape(-1).tolist() if hasattr(value, "detach") else value)]
    except (TypeError, ValueError):
        raise SettingError(f"{names(key)} must be a 1-D tensor or a sequence of times, got {value!r}", key) from None
    if not all(math.isfinite(x) for x in times):
        raise SettingError(f"{names(key)} must hold finite times, got {times}", key)
    return tuple(sorted(set(times)))


def _check_beta(names: Names, beta: Any) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= MAX_BETA:
        raise SettingError(
            f"{names('beta')} must be a number from 0 (integral control) to {MAX_BETA}, got {beta!r}", "beta"
        )


def _check_norm(names: Names, norm: Any, backward: bool) -> None:
    if norm is None or callable(norm):
        return
    if norm == "seminorm" and not backward:
        raise SettingError(
            f"{names('norm')}='seminorm' applies to the adjoint's backward pass: pass it in adjoint_options", "norm"
        )
    if norm not in NORM_NAMES:
        raise SettingError(
            f"unknown norm {names('norm')}={norm!r}; use 'rms', 'seminorm' (adjoint only) or a callable", "norm"
        )


def _check_flags(names: Names, options: Mapping[str, Any], backward: bool) -> None:
    """``per_sample``, ``compact`` and ``compile``: booleans, forward only; ``compact`` with ``per_sample``;
    ``compile`` without it."""
    for key in ("per_sample", "compact", "compile"):
        if not isinstance(options.get(key, False), bool):
            raise SettingError(f"{names(key)} must be True or False, got {options[key]!r}", key)
    per_sample, compiled = options.get("per_sample", False), options.get("compile", False)
    if per_sample and backward:
        raise SettingError(
            f"{names('per_sample')} applies to the forward solve: the adjoint's backward state is not batched",
            "per_sample",
        )
    if options.get("compact", False) and not per_sample:
        raise SettingError(
            f"{names('compact')} drops finished samples from a per-sample solve: set {names('per_sample')} too",
            "compact",
        )
    if per_sample and (options.get("step_t") or options.get("jump_t")):
        raise SettingError(
            f"{names('per_sample')}: step_t and jump_t apply to a shared step size; drop them or {names('per_sample')}",
            "per_sample",
        )
    if per_sample and options.get("norm") is not None:
        raise SettingError(
            f"{names('per_sample')} measures each sample's error by its RMS norm; drop {names('norm')}", "norm"
        )
    if compiled and backward:
        raise SettingError(
            f"{names('compile')}: compile applies to the forward solve; the adjoint's backward "
            "dynamics call autograd, which torch.compile cannot trace into one graph",
            "compile",
        )
    if compiled and (options.get("perturb") or options.get("jump_t")):
        raise SettingError(
            f"{names('compile')} runs func inside the compiled step, where perturb and jump_t cannot "
            "move its times; drop one",
            "compile",
        )
    if compiled and per_sample:
        raise SettingError(f"{names('compile')} works with a shared step size; drop {names('per_sample')}", "compile")


def _as_float(value: Any) -> Any:
    """A Python float for numbers and one-element tensors; anything else unchanged (to be rejected)."""
    if hasattr(value, "numel") and value.numel() == 1:
        return float(value)
    return value
