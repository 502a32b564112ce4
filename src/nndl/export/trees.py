"""Every model as a layer tree: a bound :mod:`nndl.nn` module tree plus the arrays its
layers read (:class:`LayerTree`), which the exporters walk and ``nndl summary`` counts.

A :class:`nndl.network.Network` (``ConvNet`` included) is one already; the hand-written
models (``TwoLayerNet``, ``FullyConnectedNet``, ``ThreeLayerConvNet``) are described by
the functions in :data:`MODEL_TREES`, their ``W1``/``b1``/``gamma1``... arrays under
layer paths such as ``conv1.W``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.cnn import ConvNet, ThreeLayerConvNet
from ..models.fc_net import FullyConnectedNet, TwoLayerNet
from ..models.network import Network
from ..nn import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)

__all__ = ["LayerTree", "MODEL_TREES", "layer_tree"]

_FN = "to_onnx"


# --- models as layer trees ------------------------------------------------------------


@dataclass
class LayerTree:
    """A model as a bound :mod:`nndl.nn` tree and the arrays its layers read.

    ``params``/``buffers`` are keyed by layer path (``block1.conv.W``,
    ``block1.bn.running_mean``); ``input_shape`` is per example. ``flat_input`` marks
    models that flatten any input of the right size (the fully connected nets), so the
    graph may take images of the mean image's shape.
    """

    root: Module
    params: Mapping[str, np.ndarray]
    buffers: Mapping[str, np.ndarray]
    input_shape: tuple[int, ...]
    flat_input: bool = False


def _network_tree(model: Network, input_shape: tuple[int, ...] | None) -> LayerTree:
    _same_input(model, model.input_dim, input_shape)
    return LayerTree(model.root, model.params, model.buffers, tuple(model.input_dim))


def _same_input(model: Any, own: tuple[int, ...], given: tuple[int, ...] | None) -> None:
    if given is not None and tuple(given) != tuple(own):
        raise ValueError(
            f"{_FN}: input_shape {tuple(given)} does not match the input {tuple(own)} "
            f"{type(model).__name__} was built for"
        )


class _Legacy:
    """Builds the tree of a hand-written model and maps its ``W1``-style arrays to paths."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.layers: list[Module] = []
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.state = model.state_arrays()

    def add(self, module: Module, **params: str) -> None:
        """Append ``module`` (named; at the root) whose local params come from ``params``."""
        self.layers.append(module)
        for local, key in params.items():
            self.params[f"{module.name}.{local}"] = self.model.params[key]

    def affine(self, idx: int, units: int) -> None:
        self.add(Linear(units, name=f"fc{idx}"), W=f"W{idx}", b=f"b{idx}")

    def batchnorm(self, idx: int, cls: type) -> None:
        eps = next(p for p in self.model.bn_params if p["layer"] == idx).get("eps", 1e-5)
        bn = cls(eps=eps, name=f"bn{idx}")
        self.add(bn, gamma=f"gamma{idx}", beta=f"beta{idx}")
        for stat in ("running_mean", "running_var"):
            self.buffers[f"{bn.name}.{stat}"] = self.state[f"{stat}{idx}"]

    def dropout(self, idx: int, keep: float) -> None:
        if 0 < keep < 1:
            self.layers.append(Dropout(keep, name=f"drop{idx}"))

    def hidden(self, idx: int, units: int, batchnorm: bool) -> None:
        """affine - [batch norm] - relu, as the models' ``_hidden_forward``."""
        self.affine(idx, units)
        if batchnorm:
            self.batchnorm(idx, BatchNorm1d)
        self.layers.append(ReLU(name=f"relu{idx}"))

    def conv_block(self, idx: int, filters: int, size: int, batchnorm: bool, pool: bool):
        """conv (stride 1, pad (size - 1) // 2) - [spatial batch norm] - relu - [2x2 pool]."""
        self.add(Conv2d(filters, size, 1, (size - 1) // 2, name=f"conv{idx}"),
                 W=f"W{idx}", b=f"b{idx}")  # fmt: skip
        if batchnorm:
            self.batchnorm(idx, BatchNorm2d)
        self.layers.append(ReLU(name=f"relu{idx}"))
        if pool:
            self.layers.append(MaxPool2d(2, name=f"pool{idx}"))

    def tree(self, input_shape: tuple[int, ...], flat: bool) -> LayerTree:
        root = Sequential(self.layers)
        root.bind(input_shape)
        return LayerTree(root, self.params, self.buffers, tuple(input_shape), flat)


def _flat_shape(model: Any, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    D = int(model.config["input_dim"])
    if input_shape is None:
        return (D,)
    if math.prod(input_shape) != D:
        raise ValueError(
            f"{_FN}: input_shape {tuple(input_shape)} has {math.prod(input_shape)} values per "
            f"example but {type(model).__name__} takes input_dim={D}"
        )
    return tuple(input_shape)


def _two_layer_tree(model: TwoLayerNet, input_shape: tuple[int, ...] | None) -> LayerTree:
    c = model.config
    b = _Legacy(model)
    b.hidden(1, c["hidden_dim"], False)
    b.affine(2, c["num_classes"])
    return b.tree(_flat_shape(model, input_shape), True)


def _fc_tree(model: FullyConnectedNet, input_shape: tuple[int, ...] | None) -> LayerTree:
    c = model.config
    b = _Legacy(model)
    for idx, units in enumerate(c["hidden_dims"], start=1):
        b.hidden(idx, units, c["use_batchnorm"])
        b.dropout(idx, c["dropout"])
    b.affine(len(c["hidden_dims"]) + 1, c["num_classes"])
    return b.tree(_flat_shape(model, input_shape), True)


def _three_layer_tree(model: ThreeLayerConvNet, input_shape: tuple[int, ...] | None):
    c = model.config
    _same_input(model, tuple(c["input_dim"]), input_shape)
    b = _Legacy(model)
    b.conv_block(1, c["num_filters"], c["filter_size"], c["use_batchnorm"], True)
    b.hidden(2, c["hidden_dim"], c["use_batchnorm"])
    b.affine(3, c["num_classes"])
    return b.tree(tuple(c["input_dim"]), False)


TreeFn = Callable[[Any, "tuple[int, ...] | None"], LayerTree]

MODEL_TREES: dict[type, TreeFn] = {
    Network: _network_tree,
    TwoLayerNet: _two_layer_tree,
    FullyConnectedNet: _fc_tree,
    ThreeLayerConvNet: _three_layer_tree,
    ConvNet: _network_tree,  # a Network (exact classes are looked up)
}
"""Model class -> ``fn(model, input_shape or None) -> LayerTree``."""


def _check_arrays(tree: LayerTree) -> None:
    """Every parameter and buffer a layer needs is there with the shape it expects."""
    for module in tree.root.modules():
        for what, specs, arrays in (
            ("parameter", module.param_specs(module.in_shape), tree.params),
            ("buffer", module.buffer_specs(module.in_shape), tree.buffers),
        ):
            for local, spec in specs.items():
                key = module.key(local)
                if key not in arrays:
                    raise ValueError(f"{_FN}: the model has no {what} {key!r}")
                if tuple(np.shape(arrays[key])) != tuple(spec.shape):
                    raise ValueError(
                        f"{_FN}: {what} {key!r} has shape {np.shape(arrays[key])}; the layer "
                        f"expects {spec.shape}"
                    )


def layer_tree(model: Any, input_shape: tuple[int, ...] | None = None) -> LayerTree:
    """``model`` as a :class:`LayerTree` (see :data:`MODEL_TREES`); checks its arrays."""
    fn = MODEL_TREES.get(type(model))
    if fn is None:
        names = sorted(cls.__name__ for cls in MODEL_TREES)
        raise ValueError(
            f"{_FN}: cannot export a {type(model).__name__}; expected one of {names} (register "
            "a function describing it as an nndl.nn layer tree in nndl.export.MODEL_TREES)"
        )
    tree = fn(model, None if input_shape is None else tuple(int(d) for d in input_shape))
    _check_arrays(tree)
    return tree
