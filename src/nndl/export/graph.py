"""The ONNX graph under construction (:class:`OnnxGraph`) and the emitters that add each
layer's nodes (:data:`EMITTERS`); :func:`nndl.export.to_onnx` drives them.

A new :mod:`nndl.nn` layer needs one small function registered in :data:`EMITTERS`::

    def emit_my_layer(g: OnnxGraph, m: MyLayer, x: str) -> str:
        return g.node("Relu", [x], m.path)          # tensor name in -> tensor name out

    EMITTERS[MyLayer] = emit_my_layer

An emitter reads the module's own attributes (hyperparameters), its arrays through
``g.param(m, "W")`` / ``g.buffer(m, "running_mean")``, and adds nodes with ``g.node``.
Lookup is by exact class: a subclass may compute something else, so it is an error
until registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..nn import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvBlock,
    ConvBNAct,
    ConvBNReLU,
    ConvBNReLUPool,
    ConvPoolBNAct,
    ConvReLU,
    ConvReLUPool,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    GroupNorm,
    LayerNorm,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Residual,
    Sequential,
)
from .trees import LayerTree

__all__ = [
    "OnnxGraph",
    "EMITTERS",
    "Emitter",
    "GELU_OPSET",
    "LAYER_NORM_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

GELU_OPSET = 20  # the first opset with a Gelu operator
LAYER_NORM_OPSET = 17  # the first opset with LayerNormalization
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
_FN = "to_onnx"


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


def emit_group_norm(g: OnnxGraph, m: LayerNorm | GroupNorm, x: str) -> str:
    """Layer and group norm: x as (N, G, L) (layer norm: G = 1), each row normalised
    (LayerNormalization over axis 2 from opset 17; below it InstanceNormalization, whose
    per-channel statistics are exactly these), back to x's shape, then scaled and
    shifted per channel."""
    p, G = m.path, m.groups
    shape = g.node("Shape", [x], p)
    name = g.fresh(f"{p}/grouped_shape")
    g.initializers[name] = g.onnx.numpy_helper.from_array(np.array([0, G, -1], np.int64), name)
    grouped = g.node("Reshape", [x, name], p)
    if g.opset >= LAYER_NORM_OPSET:
        L = math.prod(m.in_shape) // G
        ones, zeros = g.constant(f"{p}/ones", np.ones(L)), g.constant(f"{p}/zeros", np.zeros(L))
        normed = g.node("LayerNormalization", [grouped, ones, zeros], p, axis=2, epsilon=m.eps)
    else:
        ones, zeros = g.constant(f"{p}/ones", np.ones(G)), g.constant(f"{p}/zeros", np.zeros(G))
        normed = g.node("InstanceNormalization", [grouped, ones, zeros], p, epsilon=m.eps)
    y = g.node("Reshape", [normed, shape], p)
    per_channel = (m.in_shape[0],) + (1,) * (len(m.in_shape) - 1)
    gamma = g.constant(m.key("gamma"), g.tree.params[m.key("gamma")].reshape(per_channel))
    beta = g.constant(m.key("beta"), g.tree.params[m.key("beta")].reshape(per_channel))
    return g.node("Add", [g.node("Mul", [y, gamma], p), beta], p)


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
    ConvBlock: emit_children,
    ConvBNReLU: emit_children,
    ConvBNReLUPool: emit_children,
    ConvReLU: emit_children,
    ConvReLUPool: emit_children,
    ConvBNAct: emit_children,  # conv - bn - act
    ConvPoolBNAct: emit_children,  # conv - pool - bn - act (airbench's order)
    Residual: emit_residual,
    Conv2d: emit_conv,
    BatchNorm2d: emit_batchnorm,
    BatchNorm1d: emit_batchnorm,
    LayerNorm: emit_group_norm,
    GroupNorm: emit_group_norm,
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
