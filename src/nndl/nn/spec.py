"""The layer registry :data:`LAYERS` and :func:`build`, which turns a JSON spec into modules.

Spec grammar (see the package docstring for examples)::

    spec   := [layer, ...]                  # a list is a Sequential
    layer  := "type"                        # all defaults
            | {"type": "type", "name": optional, <argument>: value, ...}
            | {"type": "sequential", "layers": [layer, ...]}
            | {"type": "residual", "body": [layer, ...],
               "shortcut": "identity" | "projection" | [layer, ...]}

Every error is a ``ValueError`` that names the layer's path, the bad key or value and
the valid choices. A spec holds at most :data:`MAX_LAYERS` layers (nested ones
included), its layer lists nest at most :data:`MAX_NESTING` deep and a name has at most
:data:`MAX_NAME_LENGTH` characters (:func:`check_spec`), so that whatever builds also
trains, saves and resumes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..io.jsonfile import MAX_JSON_DEPTH, check_depth
from . import activations as _activations  # noqa: F401 - loaded for their layer types,
from . import conv_blocks as _conv_blocks  # noqa: F401 - which register themselves in
from . import layers as _layers  # noqa: F401 - LAYERS (nndl.nn.module.register_layer)
from . import pooling as _pooling  # noqa: F401
from .containers import Sequential
from .module import LAYERS, Module, assign_names, check_name, join

_SUBSPECS = {"sequential": ("layers",), "residual": ("body", "shortcut")}

MAX_LAYERS = 1000
"""The most layers in a spec, nested ones included (a container counts as one too)."""

MAX_NESTING = 16
"""The deepest nesting of layer lists (the spec itself is level 1; a sequential's
``layers`` or a residual's ``body`` one level below its own list). A spec this deep is
about 33 JSON levels, well inside :data:`nndl.io.jsonfile.MAX_JSON_DEPTH` also once
inside a run's config.json or a model file."""

MAX_NAME_LENGTH = 64
"""The longest layer name (an identifier; a parameter key joins the names on its path)."""


def check_spec(spec: Any, what: str = "the spec") -> None:
    """Refuse a spec over :data:`MAX_LAYERS`, :data:`MAX_NESTING` or
    :data:`MAX_NAME_LENGTH` (checked without recursion, before anything is built); the
    rest of the spec is checked by :func:`build`."""
    count = 0
    stack = [(spec, 1)]
    while stack:
        entries, level = stack.pop()
        if not isinstance(entries, (list, tuple)):
            continue  # not a list of layers: build says what is wrong
        if level > MAX_NESTING:
            raise ValueError(f"{what}: layers nested deeper than {MAX_NESTING} levels")
        count += len(entries)
        if count > MAX_LAYERS:
            raise ValueError(
                f"{what}: more than {MAX_LAYERS} layers (nested ones included); at most "
                f"{MAX_LAYERS} are supported"
            )
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            name = entry.get("name")
            if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"{what}: layer name {name[:20]!r}... has {len(name):,} characters; at "
                    f"most {MAX_NAME_LENGTH}"
                )
            kind = entry.get("type")
            for key in _SUBSPECS.get(kind, ()) if isinstance(kind, str) else ():
                stack.append((entry.get(key), level + 1))
    check_depth(spec, what, MAX_JSON_DEPTH)  # other values (repr recurses on them)


def _check_module_depth(root: Module) -> None:
    """Refuse a module tree too deep to turn into a spec (Module.spec recurses)."""
    limit = 2 * MAX_NESTING + 2  # a residual is two module levels: itself and its body
    stack = [(root, 1)]
    while stack:
        module, level = stack.pop()
        if level > limit:
            raise ValueError(f"the network: modules nested deeper than {limit} levels")
        stack.extend((child, level + 1) for child in module.children())


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
    check_spec(spec, _where(path))
    root = Sequential(_build_list(spec, path, "", path))
    root.path = path
    return root


def as_spec(layers: Any) -> list:
    """The list spec of ``layers``: a spec list as given, or the spec of modules (a
    Sequential's layers, or one module as a one-element list)."""
    for m in layers if isinstance(layers, (list, tuple)) else [layers]:
        if isinstance(m, Module):
            _check_module_depth(m)
    if isinstance(layers, Sequential) and type(layers) is Sequential:
        return [layer.spec() for layer in layers.layers]
    if isinstance(layers, Module):
        return [layers.spec()]
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(m, Module) for m in layers):
        return [m.spec() for m in Sequential(list(layers)).layers]
    return layers


__all__ = [
    "LAYERS",
    "MAX_LAYERS",
    "MAX_NAME_LENGTH",
    "MAX_NESTING",
    "build",
    "as_spec",
    "check_spec",
    "spec_args",
]
