"""A tuple of tensors as one flat tensor and back: how ``odeint`` hands tuple states to the solver core,
which sees only a flat tensor (a single tensor state never comes here)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class Layout:
    """The shapes and dtypes of a tuple of tensors, flattened into one tensor of their promoted dtype.

    Flat: every tensor ``reshape(-1)`` and concatenated, shape ``(N,)`` with ``N = sum(sizes)``.
    ``batch_first`` (per-sample step control): every tensor ``reshape(B, -1)`` and concatenated along
    dim 1, shape ``(B, N)``, where all tensors share their first dimension ``B``; ``sizes`` are then per row.
    ``unflatten`` takes any leading axes before the last (a time axis, or the batch), so that a
    trajectory ``(T, N)`` (or ``(T, B, N)``) becomes tensors ``(T, *shape_i)``.
    """

    def __init__(self, tensors: Sequence[Tensor], batch_first: bool = False):
        self.batch_first = batch_first
        self.dtypes = tuple(x.dtype for x in tensors)
        self.dtype = functools.reduce(torch.promote_types, self.dtypes)
        self.tails = tuple(shape[1:] if batch_first else shape for shape in (x.shape for x in tensors))
        self.sizes = tuple(torch.Size(tail).numel() for tail in self.tails)

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """One tensor of ``self.dtype``: ``(N,)``, or ``(B, N)`` when batch first."""
        lead = (len(tensors[0]),) if self.batch_first else ()
        return torch.cat([x.reshape(*lead, -1).to(self.dtype) for x in tensors], dim=-1)

    def unflatten(self, flat: Tensor) -> tuple[Tensor, ...]:
        """The tensors, each in its own shape and dtype, with ``flat``'s leading axes (all but its last) in front."""
        lead = flat.shape[:-1]
        parts = flat.split(self.sizes, dim=-1)
        return tuple(
            part.reshape((*lead, *tail)).to(dtype) for part, tail, dtype in zip(parts, self.tails, self.dtypes)
        )

    def check(self, values: Any, expected: Sequence[Tensor], what: str) -> tuple[Tensor, ...]:
        """``values`` as a tuple, refused unless it is a tuple/list of tensors shaped as ``expected``, each in its
        tensor's dtype and on its device."""
        if not isinstance(values, (tuple, list)) or len(values) != len(expected):
            got = (
                f"a {type(values).__name__} of {len(values)}"
                if isinstance(values, (tuple, list))
                else type(values).__name__
            )
            raise ValueError(
                f"{what} must return a tuple of {len(expected)} tensors shaped like the state "
                f"{_shapes(expected)}, got {got}"
            )
        for i, (value, like) in enumerate(zip(values, expected)):
            if not isinstance(value, Tensor) or value.shape != like.shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"{what} returned {got} for state element {i}, expected shape {tuple(like.shape)} "
                    f"(the state is {_shapes(expected)})"
                )
            if value.dtype != like.dtype or value.device != like.device:
                raise ValueError(
                    f"{what} returned {value.dtype} on {value.device} for state element {i}, expected "
                    f"its state's {like.dtype} on {like.device}"
                )
        return tuple(values)


def _shapes(tensors: Sequence[Tensor]) -> str:
    return "(" + ", ".join(str(tuple(x.shape)) for x in tensors) + ")"
