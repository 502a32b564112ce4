"""Convolutional networks: :class:`ThreeLayerConvNet` (SPEC's teaching example, wired by
hand on the fast sandwich layers) and :class:`ConvNet` (the configurable default model, an
architecture spec trained as a :class:`nndl.network.Network`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..functional.linear import affine_backward, affine_forward
from ..functional.loss import softmax_loss
from ..kernels.conv_blocks import (
    conv_block_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_forward,
    conv_relu_forward,
    conv_relu_pool_forward,
)
from ..nn import BufferSpec, ParamSpec
from ..validation import check_count, output_size
from .base import (
    check_dims,
    check_dropout,
    check_weight_scale,
    normal_spec,
    zeros_spec,
)
from .classic import ClassicModel, batchnorm_specs
from .network import Network

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
    """Backward of :func:`_conv_block_forward`; stores the grads, returns dx (None for
    the first layer, idx 1: the input's gradient is never used, and skipping it saves a
    third of that layer's backward pass)."""
    dx, dw, db, dgamma, dbeta = conv_block_backward(dout, cache, input_grad=idx > 1)
    if use_bn:
        grads[f"gamma{idx}"], grads[f"beta{idx}"] = dgamma, dbeta
    grads[f"W{idx}"] = dw
    grads[f"b{idx}"] = db
    return dx


class ThreeLayerConvNet(ClassicModel):
    """conv - [spatial batch norm] - relu - 2x2 max pool - affine - [batch norm] - relu -
    affine - softmax.

    The conv keeps the spatial size (stride 1, pad ``(filter_size - 1) // 2``). Params:
    ``W1`` (F, C, k, k), ``b1`` (F,), ``W2`` (F * H/2 * W/2, hidden_dim), ``b2``,
    ``W3`` (hidden_dim, num_classes), ``b3``, and with batch norm ``gamma1, beta1`` (F,),
    ``gamma2, beta2`` (hidden_dim,). Weights are normal with std ``weight_scale``, biases
    zero. ``seed`` seeds the model's own Generator (initial weights); without it they are
    drawn from NumPy's global random state (``np.random.seed`` makes them repeatable).
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
        plan = self._param_plan(self._arguments(locals()))  # checks every argument first
        self._setup(
            dict(
                input_dim=[int(d) for d in input_dim],
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
        self._init_params(plan)

    @classmethod
    def _param_plan(cls, a: dict[str, Any]) -> dict[str, ParamSpec]:
        fn = cls.__name__
        C, H, W = check_dims(fn, "input_dim", a["input_dim"], 3)
        F = check_count(fn, "num_filters", a["num_filters"], 1)
        k = _check_filter_size(fn, a["filter_size"], H, W)
        hidden = check_count(fn, "hidden_dim", a["hidden_dim"], 1)
        classes = check_count(fn, "num_classes", a["num_classes"], 1)
        std = check_weight_scale(fn, a["weight_scale"])
        Hp, Wp = _conv_pool_size(fn, C, H, W, k, True)
        plan = {
            "W1": normal_spec((F, C, k, k), std),
            "b1": zeros_spec(F),
            "W2": normal_spec((F * Hp * Wp, hidden), std),
            "b2": zeros_spec(hidden),
            "W3": normal_spec((hidden, classes), std),
            "b3": zeros_spec(classes),
        }
        if a["use_batchnorm"]:
            plan.update(batchnorm_specs(1, F))
            plan.update(batchnorm_specs(2, hidden))
        return plan

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


class ConvNet(Network):
    """A configurable deeper net (the CLI's default model), built on :class:`Network`.

    ``{conv - [spatial BN] - relu - [2x2 max pool]} x len(num_filters)`` with a pool after
    every ``pool_every`` convs (convs are stride 1 with 'same' padding), then
    ``{[dropout] - affine - [BN] - relu} x len(hidden_dims)``, then ``[dropout] - affine -
    softmax``. ``dropout`` is the probability of KEEPING a unit (0 means none), applied
    before every affine layer. ``weight_scale=None`` is He initialisation: std
    ``sqrt(2 / fan_in)`` for layers followed by a relu and ``sqrt(1 / fan_in)`` for the
    output layer; a float is that std for every layer.

    The arguments become an architecture spec (:meth:`layers`; the convs are the fused
    ``conv_bn_relu[_pool]`` blocks, ``conv_relu[_pool]`` without batch norm; a block that
    pools a map of odd size is the block without ``_pool`` and a ``maxpool2d`` with
    ``floor``, 7 -> 3), so
    ``ConvNet`` is a ``Network`` and trains, saves and exports as one. Parameters are
    named by layer path: ``block1.conv.W``, ``block1.bn.gamma``, ..., then
    ``fc1.W``, ``bn1.gamma``, ..., the output ``fc{k}.W``. Files of nndl 0.1.0 numbered
    them ``W1, b1, gamma1, ...`` by layer; :mod:`nndl.models.legacy` renames them on loading.
    ``config`` holds these constructor arguments, so ``build_model('convnet', **config)``
    rebuilds the net.
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
        args = self._arguments(locals())
        root, in_shape, num_classes = self._bind_layers(args)
        config = dict(
            input_dim=list(in_shape),
            num_filters=[int(f) for f in num_filters],
            filter_size=filter_size,
            hidden_dims=[int(h) for h in hidden_dims],
            num_classes=num_classes,
            use_batchnorm=use_batchnorm,
            pool_every=pool_every,
            weight_scale=weight_scale,
            reg=reg,
            dropout=dropout,
            seed=seed,
        )
        self._build(root, in_shape, config, reg, dtype, seed)
        self.use_batchnorm = bool(use_batchnorm)

    @classmethod
    def _bind_layers(cls, a: dict[str, Any]):
        """The bound module tree of the arguments ``a`` (errors name ConvNet)."""
        layers = cls.layers(**a)
        try:
            return Network._bind(layers, a["input_dim"], a["num_classes"])
        except ValueError as exc:  # a size the layers cannot take, say an odd one to pool
            raise ValueError(f"ConvNet: {exc}") from None

    @classmethod
    def _param_plan(cls, a: dict[str, Any]) -> dict[str, ParamSpec]:
        layers = cls.layers(**a)
        try:
            return Network._param_plan({"layers": layers, "input_dim": a["input_dim"],
                                        "num_classes": a["num_classes"]})  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"ConvNet: {exc}") from None

    @classmethod
    def _buffer_plan_of(
        cls, args: dict[str, Any], plan: dict[str, ParamSpec]
    ) -> dict[str, BufferSpec]:
        spec = {"layers": cls.layers(**args), "input_dim": args["input_dim"],
                "num_classes": args["num_classes"]}  # fmt: skip
        return Network._buffer_plan_of(spec, plan)

    @staticmethod
    def layers(
        input_dim: Sequence[int] = (3, 32, 32),
        num_filters: Sequence[int] = (32, 64, 128),
        filter_size: int = 3,
        hidden_dims: Sequence[int] = (),
        num_classes: int = 10,
        use_batchnorm: bool = True,
        pool_every: int = 1,
        weight_scale: float | None = None,
        dropout: float = 0.0,
        **_: Any,
    ) -> list[Any]:
        """The architecture spec (:mod:`nndl.nn`) of a ConvNet with these arguments, each
        checked; pure (nothing is allocated)."""
        fn = "ConvNet"
        _, H, W = check_dims(fn, "input_dim", input_dim, 3)
        filters = check_dims(fn, "num_filters", num_filters)
        if not filters:
            raise ValueError(f"{fn}: expected at least one conv layer in num_filters, got []")
        hidden = check_dims(fn, "hidden_dims", hidden_dims)
        k = _check_filter_size(fn, filter_size, H, W)
        classes = check_count(fn, "num_classes", num_classes, 1)
        every = check_count(fn, "pool_every", pool_every, 1)
        if weight_scale is not None:
            weight_scale = check_weight_scale(fn, weight_scale)
        keep = check_dropout(fn, dropout)
        he = "he_normal" if weight_scale is None else weight_scale
        conv = {"kernel_size": k, "pad": "same" if k % 2 else (k - 1) // 2, "init": he}
        layers: list[Any] = []
        for i, F in enumerate(filters):
            pool = (i + 1) % every == 0
            block = "conv_bn_relu" if use_batchnorm else "conv_relu"
            if k % 2 == 0:  # an even filter shrinks the map by one (its padding is (k-1)//2)
                H, W = H - 1, W - 1
            if pool and (H % 2 or W % 2):
                # An odd size (MNIST's 28 -> 14 -> 7): the fused blocks pool whole 2x2
                # windows only, so pool separately, leaving out the last row and column.
                layers.append({"type": block, "filters": F, **conv})
                layers.append({"type": "maxpool2d", "floor": True})
            else:
                layers.append({"type": block + ("_pool" if pool else ""), "filters": F, **conv})
            H, W = (H // 2, W // 2) if pool else (H, W)
        drop = [{"type": "dropout", "p": keep}] if 0 < keep < 1 else []
        for units in hidden:
            layers += [*drop, {"type": "linear", "units": units, "init": he}]
            layers += ["batchnorm1d", "relu"] if use_batchnorm else ["relu"]
        out_init = "lecun_normal" if weight_scale is None else weight_scale
        return [*layers, *drop, {"type": "linear", "units": classes, "init": out_init}]


__all__ = ["ThreeLayerConvNet", "ConvNet"]
