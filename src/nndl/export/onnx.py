"""ONNX export: :func:`to_onnx` turns a model and its preprocessing into an ONNX graph.

How it works. Every model is first described as a :class:`LayerTree`: a bound
:mod:`nndl.nn` module tree plus the arrays its layers read. A :class:`nndl.network.Network`
is one already; the hand-written models (``TwoLayerNet``, ``FullyConnectedNet``,
``ThreeLayerConvNet``, ``ConvNet``) are described by the functions in
:data:`MODEL_TREES` (their ``W1``/``b1``/``gamma1``... arrays under layer paths such as
``conv1.W``). The exporter then walks the tree and asks :data:`EMITTERS` for each
module's ONNX nodes; containers (Sequential, Residual, the fused blocks) emit their
children. So a new :mod:`nndl.nn` layer needs one small function registered in
:data:`EMITTERS`::

    def emit_my_layer(g: OnnxGraph, m: MyLayer, x: str) -> str:
        return g.node("Relu", [x], m.path)          # tensor name in -> tensor name out

    EMITTERS[MyLayer] = emit_my_layer

An emitter reads the module's own attributes (hyperparameters), its arrays through
``g.param(m, "W")`` / ``g.buffer(m, "running_mean")``, and adds nodes with ``g.node``.
Lookup is by exact class: a subclass may compute something else, so it is an error
until registered.

The graph. Input ``images``: float32 ``(N, *input_shape)``, raw pixel values (0-255)
with a dynamic batch dimension ``N``. Then the preprocessing (``x - mean_image``, then
``(x - mean[c]) / std[c]`` per channel), the network in inference form (batch norm with
its running statistics, dropout omitted) and ``Softmax``: output ``probabilities``
``(N, num_classes)``. Everything is float32 whatever the model's dtype.

Opset. :data:`DEFAULT_OPSET` is 17, which most runtimes and converters accept; there
GELU (tanh form) is written out as its formula ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x +
0.044715 * x**3)))`` in Mul/Add/Tanh nodes. From opset 20 on it is ONNX's own
``Gelu(approximate="tanh")``. Opsets :data:`MIN_OPSET` (13) and up are accepted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cnn import ConvNet, ThreeLayerConvNet
from ..fc_net import FullyConnectedNet, TwoLayerNet
from ..io.atomic import atomic_write_bytes
from ..network import Network
from ..nn import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvBNReLU,
    ConvBNReLUPool,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Residual,
    Sequential,
)

DEFAULT_OPSET = 17
MIN_OPSET = 13
GELU_OPSET = 20  # the first opset with a Gelu operator
PREPROCESS_KEYS = ("mean_image", "mean", "std", "class_names", "dtype")
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"

_FN = "to_onnx"


def _import_onnx():
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "nndl.export.to_onnx needs the onnx package: pip install 'nndl[onnx]'"
        ) from exc
    return onnx


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


def _convnet_tree(model: ConvNet, input_shape: tuple[int, ...] | None) -> LayerTree:
    c = model.config
    _same_input(model, tuple(c["input_dim"]), input_shape)
    b = _Legacy(model)
    bn, every = c["use_batchnorm"], c["pool_every"]
    for i, filters in enumerate(c["num_filters"]):
        b.conv_block(i + 1, filters, c["filter_size"], bn, (i + 1) % every == 0)
    idx = len(c["num_filters"])
    for units in c["hidden_dims"]:
        idx += 1
        b.dropout(idx, c["dropout"])  # ConvNet drops out before every affine layer
        b.hidden(idx, units, bn)
    idx += 1
    b.dropout(idx, c["dropout"])
    b.affine(idx, c["num_classes"])
    return b.tree(tuple(c["input_dim"]), False)


TreeFn = Callable[[Any, "tuple[int, ...] | None"], LayerTree]

MODEL_TREES: dict[type, TreeFn] = {
    Network: _network_tree,
    TwoLayerNet: _two_layer_tree,
    FullyConnectedNet: _fc_tree,
    ThreeLayerConvNet: _three_layer_tree,
    ConvNet: _convnet_tree,
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


# --- the graph ------------------------------------------------------------------------


class OnnxGraph:
    """The ONNX graph under construction: nodes, float32 initializers, unique names.

    Emitters use :meth:`node`, :meth:`param`, :meth:`buffer`, :meth:`constant` and, for
    children, :meth:`emit`. ``opset`` is the target opset version.
    """

    def __init__(self, onnx: Any, tree: LayerTree, opset: int) -> None:
        self.onnx = onnx
        self.tree = tree
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: dict[str, Any] = {}
        self._taken: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def fresh(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... if taken."""
        name, k = base, 1
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def node(self, op: str, inputs: list[str], scope: str, output: str | None = None,
             **attrs: Any) -> str:  # fmt: skip
        """Add an ``op`` node; return its output's name (``<scope>/<op>`` unless given)."""
        out = output if output is not None else self.fresh(f"{scope}/{op}" if scope else op)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def constant(self, name: str, value: Any) -> str:
        """A float32 initializer named ``name`` (made unique); returns its name."""
        name = self.fresh(name)
        array = np.asarray(value, dtype=np.float32)
        self.initializers[name] = self.onnx.numpy_helper.from_array(array, name)
        return name

    def param(self, module: Module, local: str) -> str:
        """The module's parameter ``local`` (``'W'``, ``'gamma'``...) as an initializer."""
        key = module.key(local)
        return self.constant(key, self.tree.params[key])

    def buffer(self, module: Module, local: str) -> str:
        """The module's buffer ``local`` (``'running_mean'``...) as an initializer."""
        key = module.key(local)
        return self.constant(key, self.tree.buffers[key])

    def emit(self, module: Module, x: str) -> str:
        """The nodes of ``module`` applied to tensor ``x``; returns the output tensor."""
        emitter = EMITTERS.get(type(module))
        if emitter is None:
            supported = sorted(cls.__name__ for cls in EMITTERS)
            raise ValueError(
                f"{_FN}: layer {module.path!r} ({type(module).__name__}, type "
                f"{module.type_name!r}) has no ONNX emitter; supported: {supported}. Register "
                "one in nndl.export.EMITTERS"
            )
        return emitter(self, module, x)


# --- emitters: one per layer class ------------------------------------------------------


def emit_children(g: OnnxGraph, m: Module, x: str) -> str:
    """Containers: the children in order. The fused blocks land here too: their children
    are conv, bn, relu[, pool], and ReLU before or after the max pool is the same."""
    for child in m.children():
        x = g.emit(child, x)
    return x


def emit_conv(g: OnnxGraph, m: Conv2d, x: str) -> str:
    inputs = [x, g.param(m, "W")] + ([g.param(m, "b")] if m.bias else [])
    k, s, p = m.kernel_size, m.stride, m.conv_param["pad"]
    return g.node("Conv", inputs, m.path, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)


def emit_batchnorm(g: OnnxGraph, m: BatchNorm2d | BatchNorm1d, x: str) -> str:
    """Inference form: ``(x - running_mean) / sqrt(running_var + eps) * gamma + beta``
    per channel (axis 1), for (N, C, H, W) and (N, D) alike; gamma is 1 without scale."""
    beta = g.param(m, "beta")
    C = m.in_shape[0]
    gamma = g.param(m, "gamma") if m.scale else g.constant(m.key("gamma"), np.ones(C))
    stats = [g.buffer(m, "running_mean"), g.buffer(m, "running_var")]
    return g.node("BatchNormalization", [x, gamma, beta, *stats], m.path, epsilon=m.eps)


def emit_relu(g: OnnxGraph, m: ReLU, x: str) -> str:
    return g.node("Relu", [x], m.path)


def emit_gelu(g: OnnxGraph, m: GELU, x: str) -> str:
    """GELU, tanh form: ONNX's Gelu from opset 20, else the formula itself."""
    if g.opset >= GELU_OPSET:
        return g.node("Gelu", [x], m.path, approximate="tanh")
    p = m.path
    x3 = g.node("Mul", [g.node("Mul", [x, x], p), x], p)
    inner = g.node("Add", [x, g.node("Mul", [x3, g.constant(f"{p}/a", 0.044715)], p)], p)
    u = g.node("Mul", [inner, g.constant(f"{p}/sqrt_2_over_pi", math.sqrt(2 / math.pi))], p)
    one_plus = g.node("Add", [g.node("Tanh", [u], p), g.constant(f"{p}/one", 1.0)], p)
    half_x = g.node("Mul", [x, g.constant(f"{p}/half", 0.5)], p)
    return g.node("Mul", [half_x, one_plus], p)


def _window(m: MaxPool2d | AvgPool2d) -> dict[str, Any]:
    """ONNX window attributes from the module's ``pool_param``.

    ONNX pools without padding floor the output size (``ceil_mode=0``): windows that do
    not fit are dropped, as PyTorch's floor mode does. The check against the module's own
    output shape makes any pooling option this emitter does not know an error, not a
    silently different graph.
    """
    p = m.pool_param
    kh, kw, s = p["pool_height"], p["pool_width"], p["stride"]
    C, H, W = m.in_shape
    onnx_shape = (C, (H - kh) // s + 1, (W - kw) // s + 1)
    if onnx_shape != tuple(m.output_shape):
        raise ValueError(
            f"{_FN}: layer {m.path!r} ({type(m).__name__}) outputs {m.output_shape} per example "
            f"but an ONNX pool with kernel {kh}x{kw} and stride {s} gives {onnx_shape}"
        )
    return {"kernel_shape": [kh, kw], "strides": [s, s]}


def emit_max_pool(g: OnnxGraph, m: MaxPool2d, x: str) -> str:
    return g.node("MaxPool", [x], m.path, **_window(m))


def emit_avg_pool(g: OnnxGraph, m: AvgPool2d, x: str) -> str:
    return g.node("AveragePool", [x], m.path, **_window(m))


def emit_global_avg_pool(g: OnnxGraph, m: GlobalAvgPool, x: str) -> str:
    # ONNX keeps (N, C, 1, 1); nndl's global pools give (N, C).
    return g.node("Flatten", [g.node("GlobalAveragePool", [x], m.path)], m.path, axis=1)


def emit_global_max_pool(g: OnnxGraph, m: GlobalMaxPool, x: str) -> str:
    return g.node("Flatten", [g.node("GlobalMaxPool", [x], m.path)], m.path, axis=1)


def emit_flatten(g: OnnxGraph, m: Flatten, x: str) -> str:
    return g.node("Flatten", [x], m.path, axis=1)


def emit_linear(g: OnnxGraph, m: Linear, x: str) -> str:
    """``Gemm``: ``x @ W + b``, on the flattened input; a constant ``scale`` becomes
    ``alpha = beta = scale``, i.e. ``scale * (x @ W + b)``."""
    if len(m.in_shape) != 1:
        x = g.node("Flatten", [x], m.path, axis=1)
    inputs = [x, g.param(m, "W")] + ([g.param(m, "b")] if m.bias else [])
    attrs = {} if m.scale is None else {"alpha": m.scale, "beta": m.scale}
    return g.node("Gemm", inputs, m.path, **attrs)


def emit_residual(g: OnnxGraph, m: Residual, x: str) -> str:
    """``body(x) + shortcut(x)``; the shortcut is x itself (identity) or its layers (a
    projection is built into ``m.shortcut`` when the tree is bound)."""
    body = g.emit(m.body, x)
    short = x if m.shortcut is None else g.emit(m.shortcut, x)
    return g.node("Add", [body, short], m.path)


def emit_identity(g: OnnxGraph, m: Module, x: str) -> str:
    """Dropout: the identity at inference, so no node at all."""
    return x


Emitter = Callable[[OnnxGraph, Any, str], str]

EMITTERS: dict[type, Emitter] = {
    Sequential: emit_children,
    ConvBNReLU: emit_children,
    ConvBNReLUPool: emit_children,
    Residual: emit_residual,
    Conv2d: emit_conv,
    BatchNorm2d: emit_batchnorm,
    BatchNorm1d: emit_batchnorm,
    ReLU: emit_relu,
    GELU: emit_gelu,
    MaxPool2d: emit_max_pool,
    AvgPool2d: emit_avg_pool,
    GlobalAvgPool: emit_global_avg_pool,
    GlobalMaxPool: emit_global_max_pool,
    Flatten: emit_flatten,
    Linear: emit_linear,
    Dropout: emit_identity,
}
"""Layer class -> ``emitter(graph, module, x) -> y`` (tensor names)."""


# --- preprocessing --------------------------------------------------------------------


def _finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{_FN}: expected preprocess[{name!r}] to be numbers, got {value!r}"
        ) from None
    if a.shape != shape:
        raise ValueError(
            f"{_FN}: expected preprocess[{name!r}] of shape {shape} (the model's input per "
            f"example{', channels' if len(shape) == 1 else ''}), got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{_FN}: preprocess[{name!r}] holds non-finite values")
    return a


def check_preprocess(preprocess: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Validated preprocessing: ``mean_image`` (the input shape) and/or ``mean`` and
    ``std`` (one per channel, std > 0); ``class_names`` (one per class, optional) and
    ``dtype`` (what a run folder's ``preprocess.npz`` also holds; ignored) may come too."""
    if not isinstance(preprocess, Mapping):
        raise ValueError(
            f"{_FN}: expected preprocess as a dict such as {{'mean_image': array}} or "
            f"{{'mean': [...], 'std': [...]}} ({{}} for none), got {type(preprocess).__name__}"
        )
    unknown = sorted(set(preprocess) - set(PREPROCESS_KEYS))
    if unknown:
        raise ValueError(
            f"{_FN}: unknown preprocess key(s) {unknown}; expected some of {list(PREPROCESS_KEYS)}"
        )
    out: dict[str, Any] = {}
    if "mean_image" in preprocess:
        out["mean_image"] = _finite_array("mean_image", preprocess["mean_image"], input_shape)
    if ("mean" in preprocess) != ("std" in preprocess):
        raise ValueError(f"{_FN}: preprocess needs both 'mean' and 'std', or neither")
    if "mean" in preprocess:
        if len(input_shape) != 3:
            raise ValueError(
                f"{_FN}: per-channel 'mean'/'std' need a (C, H, W) input, but the model takes "
                f"{input_shape}"
            )
        C = (input_shape[0],)
        out["mean"] = _finite_array("mean", preprocess["mean"], C)
        out["std"] = _finite_array("std", preprocess["std"], C)
        if not np.all(out["std"] > 0):
            raise ValueError(f"{_FN}: expected every preprocess std > 0, got {out['std'].tolist()}")
    if preprocess.get("class_names") is not None:
        out["class_names"] = [str(n) for n in preprocess["class_names"]]
    return out


def _emit_preprocess(g: OnnxGraph, pre: dict[str, Any], x: str) -> str:
    if "mean_image" in pre:
        x = g.node("Sub", [x, g.constant("preprocess/mean_image", pre["mean_image"])],
                   "preprocess")  # fmt: skip
    if "mean" in pre:
        per_channel = (-1, 1, 1)  # broadcasts over (N, C, H, W)
        mean = g.constant("preprocess/mean", pre["mean"].reshape(per_channel))
        std = g.constant("preprocess/std", pre["std"].reshape(per_channel))
        x = g.node("Div", [g.node("Sub", [x, mean], "preprocess"), std], "preprocess")
    return x


def _describe(pre: dict[str, Any]) -> str:
    steps = []
    if "mean_image" in pre:
        steps.append("x - mean_image")
    if "mean" in pre:
        steps.append("(x - mean[c]) / std[c] per channel")
    return ", then ".join(steps) or "none"


# --- the entry point --------------------------------------------------------------------


def _check_opset(onnx: Any, opset: Any) -> int:
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ValueError(
            f"{_FN}: expected opset as an int in [{MIN_OPSET}, {latest}], got {opset!r}"
        )
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"{_FN}: expected opset in [{MIN_OPSET}, {latest}], got {opset}")
    return int(opset)


def _input_tree(model: Any, preprocess: Any, input_shape: Any) -> LayerTree:
    """The model's tree; a fully connected net takes images of the mean image's shape."""
    tree = layer_tree(model, input_shape)
    mean_image = preprocess.get("mean_image") if isinstance(preprocess, Mapping) else None
    if input_shape is None and tree.flat_input and mean_image is not None:
        shape = tuple(np.shape(mean_image))
        if shape != tree.input_shape and math.prod(shape) == math.prod(tree.input_shape):
            tree = layer_tree(model, shape)
    return tree


def to_onnx(
    model: Any,
    preprocess: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Any:
    """An ONNX model (``onnx.ModelProto``) that classifies raw images as ``model`` does.

    ``preprocess`` is what training did to the raw pixels: ``{"mean_image": (C, H, W)}``
    (a run folder's ``preprocess.npz``) and/or ``{"mean": (C,), "std": (C,)}`` (per-channel
    normalisation, applied after the mean image); ``{}`` for none. ``class_names`` in it
    go into the model's metadata. Input ``images`` float32 ``(N, *input_shape)`` raw
    pixels (0-255), output ``probabilities`` ``(N, num_classes)``. ``input_shape``
    defaults to the model's input; a fully connected net (input_dim D) takes the mean
    image's shape when it has D values, else ``(D,)``. ``opset`` from :data:`MIN_OPSET`
    up (default :data:`DEFAULT_OPSET`). The result passes ``onnx.checker.check_model``
    with ``full_check=True``; with ``path`` it is also written there (atomically).

    Raises ``ValueError`` for an unsupported model or layer (named), bad preprocessing,
    or an opset out of range; ``ImportError`` without the ``onnx`` package.
    """
    onnx = _import_onnx()
    opset = _check_opset(onnx, opset)
    tree = _input_tree(model, preprocess, input_shape)
    pre = check_preprocess(preprocess, tree.input_shape)
    out_shape = tuple(tree.root.output_shape)
    if len(out_shape) != 1:
        raise ValueError(
            f"{_FN}: expected the model to output (num_classes,) scores, got {out_shape}"
        )
    if "class_names" in pre and len(pre["class_names"]) != out_shape[0]:
        raise ValueError(
            f"{_FN}: preprocess has {len(pre['class_names'])} class_names but the model has "
            f"{out_shape[0]} classes"
        )

    g = OnnxGraph(onnx, tree, opset)
    x = _emit_preprocess(g, pre, INPUT_NAME)
    logits = g.emit(tree.root, x)
    g.node("Softmax", [logits], "", output=OUTPUT_NAME, axis=1)
    return _finish(onnx, g, model, pre, out_shape[0], path)


def _finish(onnx: Any, g: OnnxGraph, model: Any, pre: dict, num_classes: int, path: Any):
    from .. import __version__

    helper, FLOAT = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        f"nndl_{getattr(model, 'name', type(model).__name__)}",
        [helper.make_tensor_value_info(INPUT_NAME, FLOAT, ["N", *g.tree.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, FLOAT, ["N", num_classes])],
        list(g.initializers.values()),
        doc_string=(
            f"input {INPUT_NAME}: raw pixel values 0-255; preprocessing: {_describe(pre)}; "
            f"output {OUTPUT_NAME}: softmax over {num_classes} classes"
        ),
    )
    opsets = [helper.make_opsetid("", g.opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="nndl",
                              producer_version=__version__)  # fmt: skip
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    meta = {"nndl_model": getattr(model, "name", ""), "preprocess": _describe(pre)}
    config = getattr(model, "config", None)
    if config is not None:
        meta["nndl_config"] = json.dumps(config)
    if "class_names" in pre:
        meta["class_names"] = json.dumps(pre["class_names"])
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, proto.SerializeToString())
    return proto


__all__ = [
    "to_onnx",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "EMITTERS",
    "MODEL_TREES",
    "PREPROCESS_KEYS",
    "LayerTree",
    "OnnxGraph",
    "layer_tree",
    "check_preprocess",
]
