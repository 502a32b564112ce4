"""Looking inside a model: every layer's output, and gradients with respect to the input
or to any layer's output, in test mode.

Every model is walked as its :mod:`nndl.nn` layer tree (:func:`nndl.export.layer_tree`:
a ``Network`` is one; the hand-written nets are described as one, their ``W1``, ``b1``,
... arrays under paths such as ``conv1.W``), so layer paths are the names ``summary()``
prints. The walk runs each leaf layer's own forward/backward (the fast training kernels)
in ``'test'`` mode: batch norm with the running statistics, dropout the identity, the
parameters only read. Fused blocks (``conv_bn_relu_pool``, ...) are walked through
their children (conv, batch norm, activation, pool), whose outputs are then reachable;
their fused kernels have no test-mode backward. A conv followed by batch norm runs as
one conv with the batch norm folded into its weights (``W * scale``, ``b * scale +
shift``) unless the conv's own output or gradient is asked for. A stride-1 conv's input
gradient is the conv of the output gradient with the flipped filters (the forward
kernel); no weight gradient is computed. Batch norm in test mode is the
per-channel affine map ``y = (x - running_mean) * gamma / sqrt(running_var + eps) +
beta``, whose input gradient is ``dy * gamma / sqrt(running_var + eps)``; it and the
linear layer's ``dx = dy @ W.T`` are computed here without parameter gradients; only
a strided convolution's backward kernel computes a ``dW`` (with ``dx``), dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..export import MODEL_TREES, LayerTree, layer_tree
from ..fast_layers import conv_backward_fast, conv_forward_fast
from ..nn import (
    BatchNorm1d,
    BatchNorm2d,
    Context,
    Conv2d,
    Linear,
    Module,
    Residual,
    Sequential,
)

__all__ = [
    "model_tree",
    "layer_paths",
    "spatial_layers",
    "scores",
    "activations",
    "input_gradient",
    "layer_gradient",
]


def model_tree(model: Any, fn: str = "model_tree", input_shape: Any = None) -> LayerTree:
    """``model`` as a bound layer tree (see :func:`nndl.export.layer_tree`); the fully
    connected nets bound to ``input_shape`` (per example) when given, so images work."""
    if type(model) not in MODEL_TREES:
        names = sorted(cls.__name__ for cls in MODEL_TREES)
        raise ValueError(
            f"{fn}: expected an nndl model (one of {names}), got {type(model).__name__}"
        )
    if getattr(model, "data_init_params", None):
        raise ValueError(
            f"{fn}: {model.data_init_params} are initialised from data; call "
            "model.init_from_data(X_train) first"
        )
    flat = isinstance(model.config.get("input_dim"), int)
    try:
        return layer_tree(model, tuple(input_shape) if flat and input_shape else None)
    except ValueError as exc:
        raise ValueError(f"{fn}: {str(exc).removeprefix('to_onnx: ')}") from None


def layer_paths(model: Any) -> dict[str, tuple[int, ...]]:
    """Every layer's path (as ``summary()`` prints them) -> its output shape per example."""
    root = model_tree(model, "layer_paths").root
    return {m.path: tuple(m.output_shape) for m in root.modules() if m is not root}


def spatial_layers(model: Any) -> list[str]:
    """The paths of the layers whose output is a (C, H, W) map, in the order their
    outputs are computed (a block after its last child: both give the same map)."""
    root = model_tree(model, "spatial_layers").root
    return [m.path for m in _post_order(root) if m is not root and len(m.output_shape) == 3]


def _post_order(m: Module) -> list[Module]:
    return [d for c in m.children() for d in _post_order(c)] + [m]


# --- the walk ---------------------------------------------------------------------------


class _ReachedError(Exception):
    """Raised when the backward pass has recorded every gradient asked for."""


@dataclass
class _Walk:
    """One forward (and optionally backward) pass over a tree, recording as it goes."""

    tree: LayerTree
    keep: set[str] | None = None  # outputs to record (None: every layer)
    grad_of: set[str] = field(default_factory=set)  # output gradients to record
    need_input: bool = True  # whether the backward pass goes down to the input
    outputs: dict[str, Any] = field(default_factory=dict)
    grads: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # grads is a dict the layers may write parameter gradients into; it is dropped.
        self.ctx = Context(self.tree.params, dict(self.tree.buffers), {}, "test", None, True)

    def forward(self, m: Module, x):
        if isinstance(m, Residual):
            a, body = self.forward(m.body, x)
            s, short = (x, None) if m.shortcut is None else self.forward(m.shortcut, x)
            out, cache = a + s, (body, short)
        elif isinstance(m, Sequential):  # fused blocks too: their children in order
            cache, out, kids, i = [], x, m.children(), 0
            while i < len(kids):
                if self._foldable(kids, i):  # conv then batch norm: one conv
                    out, c = self._conv_bn(kids[i], kids[i + 1], out)
                    cache.append(((kids[i], kids[i + 1]), c))
                    i += 2
                else:
                    out, c = self.forward(kids[i], out)
                    cache.append(((kids[i],), c))
                    i += 1
        elif isinstance(m, (BatchNorm1d, BatchNorm2d)):
            scale, shift = _bn_affine(m, self.tree, x.ndim)
            out, cache = (x * scale + shift).astype(x.dtype, copy=False), scale
        elif isinstance(m, Conv2d):
            W, b = m.weights(self.ctx, x)
            out, inner = conv_forward_fast(x, W, b, m.conv_param)
            cache = (inner, W, m.conv_param)
        else:
            out, cache = m.forward(x, self.ctx)
        if m.path and (self.keep is None or m.path in self.keep):
            self.outputs[m.path] = out
        return out, cache

    def backward(self, m: Module, dout, cache):
        """The gradient with respect to ``m``'s input, given ``dout`` for its output."""
        if m.path in self.grad_of:
            self.grads[m.path] = dout
            if not self.need_input and self.grad_of <= set(self.grads):
                raise _ReachedError
        if isinstance(m, Residual):
            body, short = cache
            dx = self.backward(m.body, dout, body)
            ds = dout if m.shortcut is None else self.backward(m.shortcut, dout, short)
            return dx + ds
        if isinstance(m, Sequential):
            for mods, c in reversed(cache):
                if len(mods) == 2:  # a folded conv + batch norm
                    dout = _conv_dx(dout, *c)
                else:
                    dout = self.backward(mods[0], dout, c)
            return dout
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            return (dout * cache).astype(dout.dtype, copy=False)
        if isinstance(m, Linear):  # dx only: dx = (scale * dout) @ W.T
            x, w = cache
            if m.scale is not None:
                dout = dout * dout.dtype.type(m.scale)
            return (dout @ w.T).reshape(x.shape)
        if isinstance(m, Conv2d):
            return _conv_dx(dout, *cache)
        return m.backward(dout, cache, self.ctx)

    def _foldable(self, kids: list[Module], i: int) -> bool:
        """Whether ``kids[i]`` is a conv followed by batch norm whose own output and
        gradients nobody asked for: then the pair runs as one conv whose weights carry
        the batch norm (``W * scale``, ``b * scale + shift``), in the training kernel."""
        if i + 1 >= len(kids) or not isinstance(kids[i], Conv2d):
            return False
        conv, bn = kids[i], kids[i + 1]
        asked = self.keep is None or conv.path in self.keep or conv.path in self.grad_of
        return isinstance(bn, BatchNorm2d) and not asked and bn.path not in self.grad_of

    def _conv_bn(self, conv: Conv2d, bn: BatchNorm2d, x):
        W, b = conv.weights(self.ctx, x)
        scale, shift = _bn_affine(bn, self.tree, 4)
        s = scale.reshape(-1)
        Wf = (W * s[:, None, None, None]).astype(W.dtype, copy=False)
        bf = (b * s + shift.reshape(-1)).astype(W.dtype, copy=False)
        out, inner = conv_forward_fast(x, Wf, bf, conv.conv_param)
        if self.keep is None or bn.path in self.keep:
            self.outputs[bn.path] = out
        return out, (inner, Wf, conv.conv_param)


def _conv_dx(dout, inner, W, conv_param):
    """A convolution's input gradient without its weight gradient. At stride 1 it is the
    convolution of dout with the filters flipped in space and with C and F swapped,
    padded ``k - 1 - pad`` (the forward kernel: Winograd or im2col, one GEMM where the
    backward kernel does two); other strides take the backward kernel and drop dW."""
    F, C, kh, kw = W.shape
    pad = conv_param["pad"]
    if conv_param["stride"] != 1 or kh != kw or pad > kh - 1:
        return conv_backward_fast(dout, inner, True)[0]
    Wt = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    zeros = np.zeros(C, dtype=W.dtype)
    return conv_forward_fast(dout, Wt, zeros, {"stride": 1, "pad": kh - 1 - pad})[0]


def _bn_affine(m: Module, tree: LayerTree, ndim: int):
    """Test-mode batch norm as ``x * scale + shift``, both shaped to broadcast on axis 1."""
    mean = tree.buffers[m.key("running_mean")]
    var = tree.buffers[m.key("running_var")]
    beta = tree.params[m.key("beta")]
    gamma = tree.params[m.key("gamma")] if m.scale else np.ones_like(beta)
    shape = (1, -1) + (1,) * (ndim - 2)
    scale = gamma / np.sqrt(var + m.eps)
    return scale.reshape(shape), (beta - mean * scale).reshape(shape)


def _input(fn: str, model: Any, X: Any) -> tuple[LayerTree, np.ndarray]:
    """The model's tree and ``X`` checked against its input shape, in the model's dtype."""
    if not isinstance(X, np.ndarray) or X.ndim < 2:
        got = getattr(X, "shape", type(X).__name__)
        raise ValueError(f"{fn}: expected X as an array (N, ...) of inputs, got {got}")
    tree = model_tree(model, fn, X.shape[1:])
    if X.shape[1:] != tree.input_shape:
        raise ValueError(
            f"{fn}: expected X of shape (N, {', '.join(map(str, tree.input_shape))}) for "
            f"{type(model).__name__}, got {X.shape}"
        )
    if X.dtype.kind not in "fiu":
        raise ValueError(f"{fn}: expected X of numbers, got dtype {X.dtype}")
    return tree, X.astype(model.dtype, copy=False)


def _paths(tree: LayerTree) -> list[str]:
    return [m.path for m in tree.root.modules() if m is not tree.root]


def _layers(fn: str, tree: LayerTree, layers: Iterable[str]) -> set[str]:
    paths = _paths(tree)
    wanted = {layers} if isinstance(layers, str) else set(layers)
    unknown = sorted(wanted - set(paths))
    if unknown:
        raise ValueError(f"{fn}: no layer {unknown[0]!r}; the layers are {paths}")
    return wanted


def _dscores(fn: str, dscores: Any, N: int, tree: LayerTree, dtype: Any) -> np.ndarray:
    d = np.asarray(dscores)
    expected = (N, *tree.root.output_shape)
    if d.shape != expected or d.dtype.kind not in "fiu":
        raise ValueError(
            f"{fn}: expected dscores of shape {expected} (one weight per class score), got "
            f"{d.dtype} {d.shape}"
        )
    return d.astype(dtype, copy=False)


# --- the API ----------------------------------------------------------------------------


def scores(model: Any, X: np.ndarray) -> np.ndarray:
    """Class scores (N, classes) of ``X`` by the walk (equal to ``model.loss(X)``)."""
    tree, X = _input("scores", model, X)
    return _Walk(tree, set()).forward(tree.root, X)[0]


def activations(model: Any, X: np.ndarray, layers: Iterable[str] | None = None) -> dict:
    """``{layer path: that layer's output for X}`` (N, *shape), in test mode.

    ``layers``: paths as ``summary()`` prints them (``block1``, ``block1.conv``, ...), or
    None for every layer. An unknown path is a ``ValueError`` listing the valid ones.
    """
    fn = "activations"
    tree, X = _input(fn, model, X)
    keep = None if layers is None else _layers(fn, tree, layers)
    walk = _Walk(tree, keep)
    walk.forward(tree.root, X)
    return {p: walk.outputs[p] for p in _paths(tree) if p in walk.outputs}  # summary's order


def input_gradient(model: Any, X: np.ndarray, dscores: Any) -> np.ndarray:
    """``dX`` (X's shape): the gradient of ``sum(dscores * scores(X))`` with respect to X.

    ``X`` (N, *input shape) as the model takes it (preprocessed), ``dscores`` (N,
    classes). Test mode (batch norm with running statistics, no dropout); the model's
    parameters and running statistics are only read. For the gradient of class ``y_i``'s
    score, ``dscores`` is one-hot rows.
    """
    fn = "input_gradient"
    tree, X = _input(fn, model, X)
    d = _dscores(fn, dscores, len(X), tree, X.dtype)
    walk = _Walk(tree, set())
    out, cache = walk.forward(tree.root, X)
    return np.ascontiguousarray(walk.backward(tree.root, d, cache)).reshape(X.shape)


def layer_gradient(model: Any, X: np.ndarray, dscores: Any, layer: str) -> tuple[Any, Any]:
    """``(A, dA)``: ``layer``'s output for X and the gradient of ``sum(dscores *
    scores(X))`` with respect to it, both (N, *layer shape). The backward pass stops at
    the layer (Grad-CAM needs no more)."""
    fn = "layer_gradient"
    tree, X = _input(fn, model, X)
    wanted = _layers(fn, tree, [layer])
    d = _dscores(fn, dscores, len(X), tree, X.dtype)
    walk = _Walk(tree, wanted, wanted, need_input=False)
    out, cache = walk.forward(tree.root, X)
    try:
        walk.backward(tree.root, d, cache)
    except _ReachedError:
        pass
    return walk.outputs[layer], walk.grads[layer]
