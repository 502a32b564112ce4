"""The hand-wired ConvNet of nndl 0.1.0, kept as the benchmarks' reference: benchmark-only
code (``benchmarks/bench_network.py`` times today's ConvNet, a :class:`nndl.network.Network`
built from a spec, against it; ``tests/test_convnet_on_network.py`` checks that both
compute the same). It walks its caches with index arithmetic and numbers its parameters
by layer (``W1``, ``b1``, ``gamma1``, ...), as the hand-written models do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nndl.conv_layer_utils import (
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_backward,
    conv_bn_relu_pool_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from nndl.layers import affine_backward, affine_forward, softmax_loss
from nndl.models.base import (
    check_dims,
    check_weight_scale,
    normal_spec,
    zeros_spec,
)
from nndl.models.classic import ClassicModel, batchnorm_specs
from nndl.nn import ParamSpec
from nndl.validation import check_count, output_size

__all__ = ["HandWiredConvNet"]

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


def _check_filter_size(fn: str, filter_size: Any, H: int, W: int) -> int:
    """A filter no larger than the input image (a larger one sees only padding)."""
    k = check_count(fn, "filter_size", filter_size, 1)
    if k > min(H, W):
        raise ValueError(
            f"{fn}: expected filter_size at most {min(H, W)} (the input is {H}x{W}), got {k}"
        )
    return k


def _conv_block_forward(model: ClassicModel, x, idx: int, use_bn: bool, pool: bool, conv_param):
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
    """Backward of :func:`_conv_block_forward`; stores the grads, returns dx."""
    if use_bn:
        backward = conv_bn_relu_pool_backward if pool else conv_bn_relu_backward
        dx, dw, db, grads[f"gamma{idx}"], grads[f"beta{idx}"] = backward(dout, cache)
    else:
        backward = conv_relu_pool_backward if pool else conv_relu_backward
        dx, dw, db = backward(dout, cache)
    grads[f"W{idx}"] = dw
    grads[f"b{idx}"] = db
    return dx


class HandWiredConvNet(ClassicModel):
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

    name = "hand_wired_convnet"

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
        plan = self._param_plan(self._arguments(locals()))  # checks every argument first
        num_filters = [int(f) for f in num_filters]
        self._setup(
            dict(
                input_dim=[int(d) for d in input_dim],
                num_filters=num_filters,
                filter_size=filter_size,
                hidden_dims=[int(h) for h in hidden_dims],
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
        self.num_layers = self.num_conv + self.num_hidden + 1
        self.pools = [(i + 1) % pool_every == 0 for i in range(self.num_conv)]
        self._init_params(plan)

    @classmethod
    def _param_plan(cls, a: dict[str, Any]) -> dict[str, ParamSpec]:
        fn = cls.__name__
        C, H, W = check_dims(fn, "input_dim", a["input_dim"], 3)
        num_filters = check_dims(fn, "num_filters", a["num_filters"])
        if not num_filters:
            raise ValueError(f"{fn}: expected at least one conv layer in num_filters, got []")
        hidden_dims = check_dims(fn, "hidden_dims", a["hidden_dims"])
        k = _check_filter_size(fn, a["filter_size"], H, W)
        num_classes = check_count(fn, "num_classes", a["num_classes"], 1)
        pool_every = check_count(fn, "pool_every", a["pool_every"], 1)
        weight_scale = a["weight_scale"]
        if weight_scale is not None:
            weight_scale = check_weight_scale(fn, weight_scale)
        bn = bool(a["use_batchnorm"])

        def std(fan_in: int, gain: float = 2.0) -> float:
            return float(np.sqrt(gain / fan_in)) if weight_scale is None else weight_scale

        plan: dict[str, ParamSpec] = {}
        idx = 0
        for i, F in enumerate(num_filters):
            idx += 1
            plan[f"W{idx}"] = normal_spec((F, C, k, k), std(C * k * k))
            plan[f"b{idx}"] = zeros_spec(F)
            if bn:
                plan.update(batchnorm_specs(idx, F))
            H, W = _conv_pool_size(fn, C, H, W, k, (i + 1) % pool_every == 0)
            C = F
        dims = [C * H * W, *hidden_dims]
        for D_in, D_out in zip(dims[:-1], dims[1:], strict=True):
            idx += 1
            plan[f"W{idx}"] = normal_spec((D_in, D_out), std(D_in))
            plan[f"b{idx}"] = zeros_spec(D_out)
            if bn:
                plan.update(batchnorm_specs(idx, D_out))
        idx += 1
        plan[f"W{idx}"] = normal_spec((dims[-1], num_classes), std(dims[-1], 1.0))
        plan[f"b{idx}"] = zeros_spec(num_classes)
        return plan

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
