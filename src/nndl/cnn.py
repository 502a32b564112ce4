"""Convolutional networks on the fast layers: :class:`ThreeLayerConvNet` and :class:`ConvNet`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .checks import output_size
from .conv_layer_utils import (
    conv_block_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_forward,
    conv_relu_forward,
    conv_relu_pool_forward,
)
from .layers import affine_backward, affine_forward, softmax_loss
from .model_base import Model

POOL_PARAM = {"pool_height": 2, "pool_width": 2, "stride": 2}


def _conv_pool_size(fn: str, C: int, H: int, W: int, filter_size: int, pool: bool):
    """Spatial size after a 'same' conv (stride 1) and an optional 2x2/2 max pool."""
    pad = (filter_size - 1) // 2
    H1, W1 = output_size(H, filter_size, 1, pad), output_size(W, filter_size, 1, pad)
    if H1 is None or W1 is None:
        raise ValueError(f"{fn}: filter_size {filter_size} does not fit input {(C, H, W)}")
    if not pool:
        return H1, W1
    H2, W2 = output_size(H1, 2, 2), output_size(W1, 2, 2)
    if H2 is None or W2 is None:
        raise ValueError(
            f"{fn}: a 2x2 stride 2 max pool needs an even height and width, got {H1}x{W1} "
            f"(from input {(C, H, W)} and filter_size {filter_size})"
        )
    return H2, W2


def _conv_block_forward(model: Model, x, idx: int, use_bn: bool, pool: bool, conv_param):
    """conv - [spatial batch norm] - relu - [2x2 max pool] with the layer-``idx`` params."""
    p = model.params
    w, b = p[f"W{idx}"], p[f"b{idx}"]
    if use_bn:
        g, be, bn = p[f"gamma{idx}"], p[f"beta{idx}"], model._bn_param(idx)
        if pool:
            return conv_bn_relu_pool_forward(x, w, b, g, be, conv_param, bn, POOL_PARAM)
        return conv_bn_relu_forward(x, w, b, g, be, conv_param, bn)
    if pool:
        return conv_relu_pool_forward(x, w, b, conv_param, POOL_PARAM)
    return conv_relu_forward(x, w, b, conv_param)


def _conv_block_backward(dout, cache, idx: int, use_bn: bool, pool: bool, grads: dict):
    """Backward of :func:`_conv_block_forward`; stores the grads, returns dx (None for
    the first layer, idx 1: the input's gradient is never used, and skipping it saves a
    third of that layer's backward pass)."""
    dx, dw, db, dgamma, dbeta = conv_block_backward(dout, cache, input_grad=idx > 1)
    if use_bn:
        grads[f"gamma{idx}"], grads[f"beta{idx}"] = dgamma, dbeta
    grads[f"W{idx}"] = dw
    grads[f"b{idx}"] = db
    return dx


class ThreeLayerConvNet(Model):
    """conv - [spatial batch norm] - relu - 2x2 max pool - affine - [batch norm] - relu -
    affine - softmax.

    The conv keeps the spatial size (stride 1, pad ``(filter_size - 1) // 2``). Params:
    ``W1`` (F, C, k, k), ``b1`` (F,), ``W2`` (F * H/2 * W/2, hidden_dim), ``b2``,
    ``W3`` (hidden_dim, num_classes), ``b3``, and with batch norm ``gamma1, beta1`` (F,),
    ``gamma2, beta2`` (hidden_dim,). Weights are normal with std ``weight_scale``, biases
    zero. ``seed`` seeds the model's Generator (initial weights).
    """

    name = "three_layer_convnet"

    def __init__(
        self,
        input_dim: Sequence[int] = (3, 32, 32),
        num_filters: int = 32,
        filter_size: int = 7,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float = 1e-3,
        reg: float = 0.0,
        dtype: Any = np.float32,
        use_batchnorm: bool = False,
        seed: int | None = None,
    ) -> None:
        C, H, W = (int(d) for d in input_dim)
        self._setup(
            dict(
                input_dim=[C, H, W],
                num_filters=num_filters,
                filter_size=filter_size,
                hidden_dim=hidden_dim,
                num_classes=num_classes,
                weight_scale=weight_scale,
                reg=reg,
                use_batchnorm=use_batchnorm,
                seed=seed,
            ),
            reg,
            dtype,
            seed,
        )
        self.use_batchnorm = bool(use_batchnorm)
        self.conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        Hp, Wp = _conv_pool_size(type(self).__name__, C, H, W, filter_size, True)
        self._add_weight("W1", (num_filters, C, filter_size, filter_size), weight_scale)
        self._add_bias("b1", num_filters)
        self._add_weight("W2", (num_filters * Hp * Wp, hidden_dim), weight_scale)
        self._add_bias("b2", hidden_dim)
        self._add_weight("W3", (hidden_dim, num_classes), weight_scale)
        self._add_bias("b3", num_classes)
        if self.use_batchnorm:
            self._add_batchnorm(1, num_filters)
            self._add_batchnorm(2, hidden_dim)

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Scores (N, C) when ``y`` is None, else ``(loss, grads)``."""
        X, _ = self._begin(X, y)
        bn = self.use_batchnorm
        out1, cache1 = _conv_block_forward(self, X, 1, bn, True, self.conv_param)
        out2, cache2 = self._hidden_forward(out1, 2, bn)
        scores, cache3 = affine_forward(out2, self.params["W3"], self.params["b3"])
        if y is None:
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dout2, grads["W3"], grads["b3"] = affine_backward(dscores, cache3)
        dout1 = self._hidden_backward(dout2, cache2, 2, bn, grads)
        _conv_block_backward(dout1, cache1, 1, bn, True, grads)
        return self._regularize(loss, grads, ("W1", "W2", "W3")), grads


class ConvNet(Model):
    """A configurable deeper net (the CLI's default model).

    ``{conv - [spatial BN] - relu - [2x2 max pool]} x len(num_filters)`` with a pool after
    every ``pool_every`` convs (convs are stride 1 with 'same' padding), then
    ``{[dropout] - affine - [BN] - relu} x len(hidden_dims)``, then ``[dropout] - affine -
    softmax``. ``dropout`` is the probability of KEEPING a unit (0 means none), applied
    before every affine layer. ``weight_scale=None`` is He initialisation: std
    ``sqrt(2 / fan_in)`` for layers followed by a relu and ``sqrt(1 / fan_in)`` for the
    output layer; a float is that std for every layer. Params ``W1, b1, gamma1, beta1,
    ...`` are numbered by layer: convs first, then hidden affines, then the output.
    """

    name = "convnet"

    def __init__(
        self,
        input_dim: Sequence[int] = (3, 32, 32),
        num_filters: Sequence[int] = (32, 64, 128),
        filter_size: int = 3,
        hidden_dims: Sequence[int] = (),
        num_classes: int = 10,
        use_batchnorm: bool = True,
        pool_every: int = 1,
        weight_scale: float | None = None,
        reg: float = 0.0,
        dropout: float = 0.0,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        fn = type(self).__name__
        C, H, W = (int(d) for d in input_dim)
        num_filters = [int(f) for f in num_filters]
        hidden_dims = [int(h) for h in hidden_dims]
        if not num_filters:
            raise ValueError(f"{fn}: expected at least one conv layer in num_filters, got []")
        if pool_every < 1:
            raise ValueError(f"{fn}: expected pool_every >= 1, got {pool_every}")
        self._setup(
            dict(
                input_dim=[C, H, W],
                num_filters=num_filters,
                filter_size=filter_size,
                hidden_dims=hidden_dims,
                num_classes=num_classes,
                use_batchnorm=use_batchnorm,
                pool_every=pool_every,
                weight_scale=weight_scale,
                reg=reg,
                dropout=dropout,
                seed=seed,
            ),
            reg,
            dtype,
            seed,
        )
        self.use_batchnorm = bool(use_batchnorm)
        self._set_dropout(dropout)
        self.conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        self.num_conv = len(num_filters)
        self.num_hidden = len(hidden_dims)
        self.pools = [(i + 1) % pool_every == 0 for i in range(self.num_conv)]

        def std(fan_in: int, gain: float = 2.0) -> float:
            return float(np.sqrt(gain / fan_in)) if weight_scale is None else weight_scale

        idx = 0
        for F, pool in zip(num_filters, self.pools, strict=True):
            idx += 1
            self._add_weight(f"W{idx}", (F, C, filter_size, filter_size), std(C * filter_size**2))
            self._add_bias(f"b{idx}", F)
            if self.use_batchnorm:
                self._add_batchnorm(idx, F)
            H, W = _conv_pool_size(fn, C, H, W, filter_size, pool)
            C = F
        dims = [C * H * W, *hidden_dims]
        for D_in, D_out in zip(dims[:-1], dims[1:], strict=True):
            idx += 1
            self._add_weight(f"W{idx}", (D_in, D_out), std(D_in))
            self._add_bias(f"b{idx}", D_out)
            if self.use_batchnorm:
                self._add_batchnorm(idx, D_out)
        idx += 1
        self.num_layers = idx
        self._add_weight(f"W{idx}", (dims[-1], num_classes), std(dims[-1], 1.0))
        self._add_bias(f"b{idx}", num_classes)

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Scores (N, C) when ``y`` is None, else ``(loss, grads)``."""
        out, _ = self._begin(X, y)
        bn = self.use_batchnorm
        conv_caches, fc_caches = [], []
        for i, pool in enumerate(self.pools):
            out, cache = _conv_block_forward(self, out, i + 1, bn, pool, self.conv_param)
            conv_caches.append(cache)
        for idx in range(self.num_conv + 1, self.num_layers):
            out, drop_cache = self._dropout_forward(out)
            out, cache = self._hidden_forward(out, idx, bn)
            fc_caches.append((drop_cache, cache))
        L = self.num_layers
        out, last_drop = self._dropout_forward(out)
        scores, last_cache = affine_forward(out, self.params[f"W{L}"], self.params[f"b{L}"])
        if y is None:
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dout, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, last_cache)
        dout = self._dropout_backward(dout, last_drop)
        for idx in range(L - 1, self.num_conv, -1):
            drop_cache, cache = fc_caches[idx - self.num_conv - 1]
            dout = self._hidden_backward(dout, cache, idx, bn, grads)
            dout = self._dropout_backward(dout, drop_cache)
        for i in range(self.num_conv - 1, -1, -1):
            dout = _conv_block_backward(dout, conv_caches[i], i + 1, bn, self.pools[i], grads)
        return self._regularize(loss, grads, [f"W{i}" for i in range(1, L + 1)]), grads
