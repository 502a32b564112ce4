"""Files written by nndl 0.1.0 (file format version 1), read by today's code.

The one place that knows the old layouts. :func:`upgrade` turns a tree read from a
version-1 file (a model or a Solver checkpoint; see :mod:`nndl.io.checkpoint`) into
today's layout, and renames the parameters of the models whose names changed: the
hand-wired ``ConvNet`` numbered its arrays by layer (``W1``, ``b1``, ``gamma1``,
``beta1``, ``running_mean1``, ...); today's ``ConvNet`` is a :class:`nndl.network.Network`
whose arrays are named by layer path (``block1.conv.W``, ``block1.bn.running_mean``,
``fc1.W``). It works on outlines too (shapes in place of arrays), so a loader checks the
upgraded outline before reading any array. Values of the wrong type are passed through
untouched, for the loader's checks to refuse with a message naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..nn.module import BufferSpec
from .base import Model, ParamSpec
from .cnn import ConvNet

__all__ = ["upgrade", "numbered_names", "RENAMED_MODELS"]

# Models whose version-1 files name their arrays by layer number.
RENAMED_MODELS: dict[str, type[Model]] = {"convnet": ConvNet}

_STEMS = {"weight": "W", "bias": "b", "norm_scale": "gamma", "norm_shift": "beta"}


def numbered_names(
    plan: Mapping[str, ParamSpec], buffers: Mapping[str, BufferSpec]
) -> dict[str, str]:
    """``{old name: path}`` for a parameter plan in layer order and the model's declared
    buffers: each weight starts the next layer number, and the layer's bias and batch norm
    (parameters and the running statistics its layer declares) take the same number, as
    the hand-wired models named them."""
    names: dict[str, str] = {}
    idx = 0
    for key, spec in plan.items():
        if spec.role == "weight":
            idx += 1
        names[f"{_STEMS[spec.role]}{idx}"] = key
        layer = key.rsplit(".", 1)[0]
        for stat in ("running_mean", "running_var"):
            if f"{layer}.{stat}" in buffers:
                names[f"{stat}{idx}"] = f"{layer}.{stat}"
    return names


def _renames(name: Any, config: Any) -> dict[str, str]:
    cls = RENAMED_MODELS.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(config, Mapping):
        return {}
    try:
        return numbered_names(cls.param_plan(**config), cls.buffer_plan(**config))
    except (TypeError, ValueError):
        return {}  # a bad config: the loader refuses it with its own message


def _renamed(d: Any, names: dict[str, str]) -> Any:
    if not isinstance(d, Mapping) or not names:
        return d
    return {names.get(k, k): v for k, v in d.items()}


def _solver(tree: Mapping[str, Any], names: dict[str, str]) -> Any:
    """A version-1 checkpoint's solver state in today's layout (see ``Solver.state_dict``)."""
    s = tree.get("solver")
    if not isinstance(s, Mapping):
        return s
    scalars, arrays = s.get("optim_scalars"), tree.get("optim", {})
    optim = scalars
    if isinstance(scalars, Mapping) and isinstance(arrays, Mapping):
        optim = {}
        for p in {*scalars, *arrays}:
            own = scalars.get(p, {}), arrays.get(p, {})
            if not all(isinstance(part, Mapping) for part in own):
                optim = scalars  # malformed: refused by the solver
                break
            optim[p] = {**own[0], **own[1]}
    keys = ("epoch", "iteration", "best_val_acc", "iterations_per_epoch", "batch_size",
            "num_epochs", "lr_decay", "update_rule", "rng")  # fmt: skip
    return {
        **{k: s.get(k) for k in keys},
        "optim_configs": _renamed(optim, names),
        "best_params": _renamed(tree.get("best", {}), names),
        "history": tree.get("history"),
        "perm": tree.get("perm"),
        "components": {},
    }


def upgrade(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` (read from an nndl file, or its outline) in today's layout."""
    if tree.get("version") != 1:
        return tree
    names = _renames(tree.get("name"), tree.get("config"))
    out: dict[str, Any] = {
        "version": 1,
        "kind": tree.get("kind"),
        "model": {
            "name": tree.get("name"),
            "config": tree.get("config"),
            "params": _renamed(tree.get("params", {}), names),
            "buffers": _renamed(tree.get("state", {}), names),
            "rng": tree.get("model_rng"),
        },
        "extra": tree.get("extra"),
    }
    if tree.get("kind") == "checkpoint":
        out["solver"] = _solver(tree, names)
    return out
