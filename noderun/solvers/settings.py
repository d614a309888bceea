"""The one parsed solver setting: method, tolerances, options, gradient mode and the adjoint's backward
options, validated once — from ``odeint``'s keywords or from the ``solver``/``grad`` config groups — and
handed down to the integration loop unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .method import SolveMethod
from .methods import get_method
from .options import CONFIG_KEYS, Names, SettingError, SolverOptions, accepted_keys, carried_to_backward, parse_options

GRAD_MODES = ("backprop", "adjoint", "checkpoint")


@dataclass(frozen=True)
class SolverSettings:
    """How to solve: ``method``, tolerances, ``options`` and gradient mode ``grad`` as the user gave them,
    and their parsed forms ``forward`` and ``backward`` (the adjoint's; ``None`` for other modes).

    The adjoint's backward solve takes ``adjoint_method``, ``adjoint_rtol``/``adjoint_atol`` (default: the
    forward ones) and ``adjoint_options`` (default: the forward options but ``norm``, ``per_sample`` and
    ``compile``; with another ``adjoint_method``, only if it accepts every one of them).
    Raises ``SettingError`` (a ``ValueError``) naming the offending key as ``names`` calls it.
    ``events``: the settings of a solve until an event (``odeint(..., event_fn=...)``).
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    options: Mapping[str, Any] = field(default_factory=dict)
    grad: str = "adjoint"
    adjoint_options: Mapping[str, Any] | None = None
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    adjoint_method: str | None = None
    names: Names = field(default=Names(), repr=False, compare=False)
    events: bool = False
    forward: SolverOptions = field(init=False, repr=False, compare=False)
    backward: SolverOptions | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            tableau = get_method(self.method)
        except ValueError as error:
            raise SettingError(str(error), "method") from None
        forward = parse_options(tableau, self.rtol, self.atol, self.options, names=self.names, events=self.events)
        if self.grad not in GRAD_MODES:
            raise SettingError(
                f"unknown {self.names('grad')} {self.grad!r}; valid grad modes: {', '.join(GRAD_MODES)}", "grad"
            )
        if self.grad == "checkpoint" and forward.tableau.multistep:
            why = (
                "solves the whole problem at once, leaving no steps: use 'adjoint'"
                if isinstance(forward.tableau, SolveMethod)
                else "carries a history from step to step: use 'backprop' or 'adjoint'"
            )
            raise SettingError(
                f"{self.names('grad')}='checkpoint' recomputes steps one by one; {self.method!r} {why}", "grad"
            )
        object.__setattr__(self, "forward", forward)
        object.__setattr__(self, "backward", self._backward(forward) if self.grad == "adjoint" else None)

    def _backward(self, forward: SolverOptions) -> SolverOptions:
        method = self._backward_method(forward)
        options = carried_to_backward(self.options) if self.adjoint_options is None else self.adjoint_options
        if self.adjoint_options is None and method is not forward.tableau:
            left = sorted(set(options) - set(accepted_keys(method, self.events)))
            if left:
                raise SettingError(
                    f"adjoint_method={self.adjoint_method!r} does not take the forward options {left}"
                    f" of {self.method!r}: pass adjoint_options for it",
                    "adjoint_options",
                )
        names = self.names if self.names.config else Names("adjoint_options")
        return parse_options(
            method,
            forward.rtol if self.adjoint_rtol is None else self.adjoint_rtol,
            forward.atol if self.adjoint_atol is None else self.adjoint_atol,
            options,
            backward=True,
            names=names,
            events=self.events,
        )

    def _backward_method(self, forward: SolverOptions):
        if self.adjoint_method is None:
            return forward.tableau
        try:
            return get_method(self.adjoint_method)
        except ValueError as error:
            raise SettingError(f"adjoint_method: {error}", "adjoint_method") from None

    @classmethod
    def from_config(cls, solver: Mapping[str, Any], grad: Mapping[str, Any], key: str = "solver") -> SolverSettings:
        """From a ``solver`` config node (at ``key``) and the ``grad`` node; unset (null) options are left to
        the solver's defaults, keys named otherwise in a config (``CONFIG_KEYS``: ``scipy_method``) become
        their options keys, ``grad.seminorm`` sets the adjoint's norm (adaptive methods only) and
        ``grad.method`` its backward method (default: the forward one), with ``grad.step_size`` for a fixed-step
        one."""
        config_keys = {config: key for key, config in CONFIG_KEYS.items()}
        options = {
            config_keys.get(name, name): value
            for name, value in solver.items()
            if value is not None and name != "method"
        }
        tolerances = {name: options.pop(name) for name in ("rtol", "atol") if name in options}
        adjoint_method, backward_step = grad.get("method"), grad.get("step_size")
        seminorm = bool(grad.get("seminorm", False)) and _adaptive(adjoint_method or solver.get("method"))
        adjoint_options = None
        if seminorm or adjoint_method or backward_step is not None:
            adjoint_options = carried_to_backward(options)
            if adjoint_method:  # the solver node's options that the backward method takes (the config sets them all)
                adjoint_options = {
                    name: value for name, value in adjoint_options.items() if name in _keys(adjoint_method)
                }
            if seminorm:
                adjoint_options["norm"] = "seminorm"
            if backward_step is not None:
                adjoint_options["step_size"] = backward_step
        return cls(  # the config's method and grad.mode as given: __post_init__ refuses a missing or unknown one
            method=cast(str, solver.get("method")),
            options=options,
            grad=cast(str, grad.get("mode")),
            adjoint_options=adjoint_options,
            adjoint_method=adjoint_method,
            names=Names(key, config=True),
            **tolerances,
        )


def _adaptive(method: Any) -> bool:
    """Whether ``method`` (a name or an alias) has an error norm; an unknown one is refused on construction."""
    try:
        return get_method(method).adaptive
    except ValueError:
        return False


def _keys(method: Any) -> tuple[str, ...]:
    """The option keys ``method`` takes; none for an unknown one (refused on construction)."""
    try:
        return accepted_keys(get_method(method))
    except ValueError:
        return ()


_PLAIN = frozenset({str, int, float, bool, type(None)})
_PARSED: dict[tuple, SolverSettings] = {}  # odeint's settings of plain values, parsed once each
_MAX_PARSED = 256


def parsed(
    method: str,
    rtol: Any,
    atol: Any,
    options: Mapping[str, Any] | None,
    grad: str,
    adjoint_options: Mapping[str, Any] | None = None,
    adjoint_rtol: Any = None,
    adjoint_atol: Any = None,
    adjoint_method: str | None = None,
    events: bool = False,
) -> SolverSettings:
    """``SolverSettings`` of ``odeint``'s keywords, parsed once per distinct setting of plain values (a
    training loop calling ``odeint`` every iteration with the same keywords parses them once). A setting
    with any other kind of value (a tensor tolerance, a callable norm) is parsed on every call."""
    options = {} if options is None else options
    values = (method, rtol, atol, options, grad, adjoint_options, adjoint_rtol, adjoint_atol, adjoint_method, events)
    key = _plain_key(values)
    settings = None if key is None else _PARSED.pop(key, None)
    if key is not None and settings is not None:  # found only under a key
        _PARSED[key] = settings  # the most recently used last
    else:
        settings = SolverSettings(
            method=method,
            rtol=rtol,
            atol=atol,
            options=dict(options),
            grad=grad,
            adjoint_options=None if adjoint_options is None else dict(adjoint_options),
            adjoint_rtol=adjoint_rtol,
            adjoint_atol=adjoint_atol,
            adjoint_method=adjoint_method,
            events=events,
        )
        if key is not None:
            if len(_PARSED) >= _MAX_PARSED:  # the least recently used goes: a loop's setting is kept
                del _PARSED[next(iter(_PARSED))]
            _PARSED[key] = settings
    return settings


def _plain_key(values: tuple) -> tuple | None:
    """The values with their types (``True`` is not ``1`` here), dicts as sorted items; ``None`` when one is
    not a plain number, string, boolean or ``None`` (a tensor's value may change in place)."""
    key = []
    for value in values:
        kind = type(value)
        if kind is dict:
            items = tuple((name, type(item), item) for name, item in value.items())
            if not all(type(name) is str and kind_ in _PLAIN for name, kind_, _ in items):
                return None
            key.append(tuple(sorted(items)))
        elif kind in _PLAIN:
            key.append((kind, value))
        else:
            return None
    return tuple(key)
