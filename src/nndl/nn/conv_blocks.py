"""The fused conv block: one configurable :class:`ConvBlock` (spec name ``conv_block``)
and the spec names of earlier releases as aliases of it (``conv_bn_act``,
``conv_pool_bn_act``, ``conv_bn_relu``, ``conv_bn_relu_pool``, ``conv_relu``,
``conv_relu_pool``), whose specs read and build as before.

A block holds the children of its unfused form (``conv``, [``pool``,] [``bn``,] the
activation[, ``pool``]), so its parameters are ``<block>.conv.W``, ``<block>.bn.beta``,
... and a summary or an exporter sees the unfused layers; only forward/backward differ:
one call of :func:`nndl.kernels.conv_blocks.conv_block_forward`, which runs batch norm,
the activation and the max pool on blocks of channels while they are in cache.
"""

from __future__ import annotations

from typing import Any

from ..kernels.conv_blocks import conv_block_backward, conv_block_forward
from ..validation import bool_arg
from .activations import ACTIVATION_LAYERS
from .containers import Sequential
from .layers import BatchNorm2d, Conv2d
from .module import Context, register_layer
from .pooling import MaxPool2d

__all__ = [
    "ConvBlock",
    "POOL_PLACES",
    "ConvBNAct",
    "ConvPoolBNAct",
    "ConvBNReLU",
    "ConvBNReLUPool",
    "ConvReLU",
    "ConvReLUPool",
]

POOL_PLACES = (None, "after_conv", "last")
"""Where a block's max pool goes: none, right after the conv (conv - pool - [BN] - act,
airbench's order: batch norm and the activation run on the pooled map), or last."""


@register_layer
class ConvBlock(Sequential):
    """Fused conv - [spatial batch norm] - activation, with an optional max pool:
    (C, H, W) -> (filters, H', W').

    Arguments as :class:`Conv2d` (``filters`` ... ``init``), ``batchnorm`` (true) with
    :class:`BatchNorm2d`'s ``momentum``, ``eps`` and ``scale``, ``activation`` (a name in
    :data:`nndl.nn.activations.ACTIVATION_LAYERS`: ``'relu'``, ``'gelu'``), ``pool`` (one
    of :data:`POOL_PLACES`) with :class:`MaxPool2d`'s ``pool_size`` (2), ``pool_stride``
    (``pool_size``) and ``floor`` (false).
    """

    type_name = "conv_block"
    prefix = "block"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int | str = "same",
        bias: bool = True,
        init: str | float = "he_normal",
        batchnorm: bool = True,
        momentum: float = 0.9,
        eps: float = 1e-5,
        scale: bool = True,
        activation: str = "relu",
        pool: str | None = None,
        pool_size: int = 2,
        pool_stride: int | None = None,
        floor: bool = False,
        name: str | None = None,
    ) -> None:
        if pool not in POOL_PLACES:
            raise ValueError(f"pool: expected one of {list(POOL_PLACES)}, got {pool!r}")
        if activation not in ACTIVATION_LAYERS:
            raise ValueError(
                f"activation: expected one of {sorted(ACTIVATION_LAYERS)}, got {activation!r}"
            )
        self.conv = Conv2d(filters, kernel_size, stride, pad, bias, init, name="conv")
        bn = bool_arg("batchnorm", batchnorm)
        self.bn = BatchNorm2d(momentum, eps, scale, name="bn") if bn else None
        self.pool = None if pool is None else MaxPool2d(pool_size, pool_stride, floor, name="pool")
        self.pool_first = pool == "after_conv"
        self.activation = activation
        act = ACTIVATION_LAYERS[activation](name=activation)
        first = [self.pool] if self.pool_first else []
        last = [self.pool] if self.pool is not None and not self.pool_first else []
        bn_layer = [] if self.bn is None else [self.bn]
        super().__init__([self.conv, *first, *bn_layer, act, *last], name)

    def config(self) -> dict[str, Any]:
        out = self.conv.config()
        out.pop("trainable")
        out["batchnorm"] = self.bn is not None
        if self.bn is not None:
            out.update(self.bn.config())
        out["activation"] = self.activation
        out["pool"] = None if self.pool is None else "after_conv" if self.pool_first else "last"
        if self.pool is not None:
            out.update(pool_size=self.pool.pool_size, pool_stride=self.pool.stride,
                       floor=self.pool.floor)  # fmt: skip
        return out

    def forward(self, x, ctx: Context):
        conv, bn = self.conv, self.bn
        W, b = conv.weights(ctx, x)
        pool_param = None if self.pool is None else self.pool.pool_param
        gamma = beta = bn_param = None
        if bn is not None:
            gamma, beta = bn.affine(ctx, x)
            bn_param = bn.bn_param(ctx)
        conv_param = conv.conv_param_for(ctx)
        out, cache = conv_block_forward(x, W, b, conv_param, gamma, beta, bn_param,
                                        pool_param, self.activation, self.pool_first)  # fmt: skip
        if bn is not None:
            bn.update_buffers(ctx, bn_param)
        return out, cache

    def backward(self, dout, cache, ctx: Context):
        dx, dw, db, dgamma, dbeta = conv_block_backward(dout, cache, ctx.need_input_grad)
        self.conv.store_grads(ctx, dw, db)
        if self.bn is not None:
            self.bn.store_grads(ctx, dgamma, dbeta)
        return dx


class _Alias(ConvBlock):
    """A spec name of an earlier release: a :class:`ConvBlock` with some arguments fixed,
    whose spec lists only the alias's own arguments (so it reads as it always did)."""

    _args: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in super().config().items() if k in self._args}


_CONV = ("filters", "kernel_size", "stride", "pad", "bias", "init")
_BN = ("momentum", "eps", "scale")


@register_layer
class ConvBNAct(_Alias):
    """``conv_bn_act``: conv - BN - activation (a :class:`ConvBlock` without a pool)."""

    type_name = "conv_bn_act"
    _args = (*_CONV, *_BN, "activation")

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 momentum: float = 0.9, eps: float = 1e-5, scale: bool = True,
                 activation: str = "relu", name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, True, momentum, eps,
                         scale, activation, name=name)  # fmt: skip


@register_layer
class ConvPoolBNAct(_Alias):
    """``conv_pool_bn_act``: conv - max pool - BN - activation (airbench's order)."""

    type_name = "conv_pool_bn_act"
    _args = (*_CONV, *_BN, "activation", "pool_size", "pool_stride", "floor")

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 momentum: float = 0.9, eps: float = 1e-5, scale: bool = True,
                 activation: str = "relu", pool_size: int = 2, pool_stride: int | None = None,
                 floor: bool = False, name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, True, momentum, eps,
                         scale, activation, "after_conv", pool_size, pool_stride, floor,
                         name)  # fmt: skip


@register_layer
class ConvBNReLU(_Alias):
    """``conv_bn_relu``: conv - BN - ReLU."""

    type_name = "conv_bn_relu"
    _args = (*_CONV, *_BN)

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 momentum: float = 0.9, eps: float = 1e-5, scale: bool = True,
                 name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, True, momentum, eps,
                         scale, "relu", name=name)  # fmt: skip


@register_layer
class ConvBNReLUPool(_Alias):
    """``conv_bn_relu_pool``: conv - BN - ReLU - max pool (``pool_size`` windows, stride
    ``pool_size``)."""

    type_name = "conv_bn_relu_pool"
    _args = (*_CONV, *_BN, "pool_size")

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 momentum: float = 0.9, eps: float = 1e-5, scale: bool = True,
                 pool_size: int = 2, name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, True, momentum, eps,
                         scale, "relu", "last", pool_size, name=name)  # fmt: skip


@register_layer
class ConvReLU(_Alias):
    """``conv_relu``: conv - ReLU, without batch norm."""

    type_name = "conv_relu"
    _args = _CONV

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, False, name=name)


@register_layer
class ConvReLUPool(_Alias):
    """``conv_relu_pool``: conv - ReLU - max pool (``pool_size`` windows, stride
    ``pool_size``), without batch norm."""

    type_name = "conv_relu_pool"
    _args = (*_CONV, "pool_size")

    def __init__(self, filters: int, kernel_size: int = 3, stride: int = 1,
                 pad: int | str = "same", bias: bool = True, init: str | float = "he_normal",
                 pool_size: int = 2, name: str | None = None) -> None:  # fmt: skip
        super().__init__(filters, kernel_size, stride, pad, bias, init, False, pool="last",
                         pool_size=pool_size, name=name)  # fmt: skip
