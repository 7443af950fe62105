"""A model input x is a tensor or a mapping of tensors (input_ids, attention_mask, …) sharing their first dimension, the rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Union

import torch
from hypothesis.errors import InvalidArgument

Inputs = Union[torch.Tensor, Mapping]


def tensors(x: Inputs) -> list[torch.Tensor]:
    """The tensors x holds: itself, or a mapping's values in order."""
    return list(x.values()) if isinstance(x, Mapping) else [x]


def check_inputs(x) -> None:
    """InvalidArgument unless x is a tensor, or a non-empty mapping of str → tensor whose first dimensions agree."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            raise InvalidArgument("a dataset's x must have a first dimension, the rows; got a 0-d tensor")
        return
    if not isinstance(x, Mapping) or not x:
        raise InvalidArgument(
            f"a dataset's x must be a tensor or a mapping of keyword → tensor (input_ids, attention_mask, …) "
            f"passed to the model as keywords; got {type(x).__name__}"
        )
    bad = [key for key, value in x.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.dim() == 0]
    if bad:
        raise InvalidArgument(f"a dataset's x mapping must hold str → tensors with a first dimension (the rows); not {bad}")
    shapes = {key: tuple(value.shape) for key, value in x.items()}
    if len({shape[0] for shape in shapes.values()}) != 1:
        raise InvalidArgument(f"the tensors in a dataset's x mapping need the same number of rows: {shapes}")


def named(x: Inputs, name: str) -> list[tuple[str, torch.Tensor]]:
    """(label, tensor) for each tensor x holds: [("x", x)], or [("x['input_ids']", …), …] for a mapping."""
    return [(f"{name}[{key!r}]", value) for key, value in x.items()] if isinstance(x, Mapping) else [(name, x)]


def rows(x: Inputs) -> int:
    """The number of rows: the first dimension of x (of every tensor in a mapping)."""
    return len(tensors(x)[0])


def split(x: Inputs, sizes: list[int]) -> list[Inputs]:
    """x cut along the rows into consecutive pieces of `sizes`."""
    if isinstance(x, Mapping):
        pieces = {key: torch.split(value, sizes) for key, value in x.items()}
        return [{key: pieces[key][j] for key in x} for j in range(len(sizes))]
    return list(torch.split(x, sizes))


def cat(parts: list[Inputs]) -> Inputs:
    """The pieces joined along the rows (a mapping key by key)."""
    if isinstance(parts[0], Mapping):
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    return torch.cat(parts)


def rows_slice(x: Inputs, start: int, stop: int) -> Inputs:
    """Rows [start, stop) of x."""
    return {key: value[start:stop] for key, value in x.items()} if isinstance(x, Mapping) else x[start:stop]


def to_dtype(x: Inputs, dtype: torch.dtype) -> Inputs:
    """Floating-point tensors in `dtype`; integer and boolean ones (token ids, masks) as they are."""
    convert = lambda t: t.to(dtype) if t.is_floating_point() else t  # noqa: E731
    return {key: convert(value) for key, value in x.items()} if isinstance(x, Mapping) else convert(x)


def clone(x: Inputs) -> Inputs:
    """A copy of x (of every tensor in a mapping)."""
    return {key: value.clone() for key, value in x.items()} if isinstance(x, Mapping) else x.clone()


def shape(x: Inputs) -> str:
    """Each row's shape: '(5,)', or '{input_ids (5,), attention_mask (5,)}' for a mapping."""
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{key} {tuple(value.shape[1:])}" for key, value in x.items()) + "}"
    return str(tuple(x.shape[1:]))
