"""The layer registry :data:`LAYERS` and :func:`build`, which turns a JSON spec into modules.

Spec grammar (see the package docstring for examples)::

    spec   := [layer, ...]                  # a list is a Sequential
    layer  := "type"                        # all defaults
            | {"type": "type", "name": optional, <argument>: value, ...}
            | {"type": "sequential", "layers": [layer, ...]}
            | {"type": "residual", "body": [layer, ...],
               "shortcut": "identity" | "projection" | [layer, ...]}

Every error is a ``ValueError`` that names the layer's path, the bad key or value and
the valid choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .activations import GELU, ReLU
from .containers import ConvBNAct, ConvBNReLU, ConvBNReLUPool, ConvPoolBNAct, Residual, Sequential
from .conv_blocks import ConvReLU, ConvReLUPool
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Linear
from .module import Module, assign_names, check_name, join
from .pooling import AvgPool2d, Flatten, GlobalAvgPool, GlobalMaxPool, MaxPool2d

LAYERS: dict[str, type[Module]] = {
    cls.type_name: cls
    for cls in (
        Conv2d, BatchNorm2d, BatchNorm1d, ReLU, GELU, MaxPool2d, AvgPool2d, GlobalAvgPool,
        GlobalMaxPool, Flatten, Linear, Dropout, Sequential, Residual, ConvBNReLU,
        ConvBNReLUPool, ConvBNAct, ConvPoolBNAct, ConvReLU, ConvReLUPool,
    )
}  # fmt: skip
"""Layer type name (as written in a spec) -> class."""

_SUBSPECS = {"sequential": ("layers",), "residual": ("body", "shortcut")}


def spec_args(cls: type[Module]) -> list[str]:
    """The spec keys a layer type accepts besides ``type`` and ``name``."""
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "name")]


def _where(path: str) -> str:
    return f"layer {path!r}" if path else "the network"


def _type_and_name(entry: Any, path: str) -> tuple[str, str | None]:
    """The type name and explicit name of one layer entry, both validated."""
    if isinstance(entry, str):
        kind, name = entry, None
    elif isinstance(entry, Mapping):
        if "type" not in entry:
            raise ValueError(
                f"{_where(path)}: expected a 'type' key (one of {sorted(LAYERS)}), got keys "
                f"{sorted(entry)}"
            )
        kind, name = entry["type"], entry.get("name")
    else:
        raise ValueError(
            f"{_where(path)}: expected a layer type name or a dict with 'type', got "
            f"{type(entry).__name__} {entry!r}"
        )
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ValueError(
            f"{_where(path)}: unknown layer type {kind!r}; expected one of {sorted(LAYERS)}"
        )
    try:
        return kind, check_name(name)
    except ValueError as exc:
        raise ValueError(f"{_where(path)} ({kind}): {exc}") from None


def _build_list(entries: Any, path: str, key: str, base: str) -> list[Module]:
    """Build the layers of ``entries`` (the ``key`` of the layer at ``path``; their paths
    start with ``base``)."""
    where = f"{_where(path)}: {key}" if key else _where(path)
    if not isinstance(entries, (list, tuple)) or not entries:
        also = " or one of ['identity', 'projection']" if key == "shortcut" else ""
        raise ValueError(f"{where}: expected a non-empty list of layers{also}, got {entries!r}")
    kinds = [_type_and_name(e, f"{base}[{i}]") for i, e in enumerate(entries)]
    names = assign_names([LAYERS[k].prefix for k, _ in kinds], [n for _, n in kinds], where)
    return [_build_one(e, join(base, n), k, n)
            for e, (k, _), n in zip(entries, kinds, names, strict=True)]  # fmt: skip


def _build_one(entry: Any, path: str, kind: str, name: str) -> Module:
    cls = LAYERS[kind]
    args = (
        {k: v for k, v in entry.items() if k not in ("type", "name")}
        if isinstance(entry, Mapping)
        else {}
    )
    valid = spec_args(cls)
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise ValueError(
            f"{_where(path)} ({kind}): unknown key(s) {unknown}; expected some of {valid}"
        )
    for key in _SUBSPECS.get(kind, ()):
        if key not in args:
            continue
        if kind == "residual" and key == "shortcut" and isinstance(args[key], str):
            continue  # 'identity' / 'projection', checked by Residual
        args[key] = _build_list(args[key], path, key, path if key == "layers" else join(path, key))
    try:
        return cls(**args, name=name)
    except TypeError as exc:  # a missing required argument
        raise ValueError(f"{_where(path)} ({kind}): {exc}; expected keys {valid}") from None
    except ValueError as exc:
        raise ValueError(f"{_where(path)} ({kind}): {exc}") from None


def build(spec: Any, path: str = "") -> Sequential:
    """Modules from a JSON spec (a list of layers, see the module docstring), not yet bound
    to an input shape: the root is a :class:`Sequential` with path ``path``."""
    if isinstance(spec, Module):
        spec = as_spec(spec)
    root = Sequential(_build_list(spec, path, "", path))
    root.path = path
    return root


def as_spec(layers: Any) -> list:
    """The list spec of ``layers``: a spec list as given, or the spec of modules (a
    Sequential's layers, or one module as a one-element list)."""
    if isinstance(layers, Sequential) and type(layers) is Sequential:
        return [layer.spec() for layer in layers.layers]
    if isinstance(layers, Module):
        return [layers.spec()]
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(m, Module) for m in layers):
        return [m.spec() for m in Sequential(list(layers)).layers]
    return layers


__all__ = ["LAYERS", "build", "as_spec", "spec_args"]
