"""Fused conv blocks without batch norm: :class:`ConvReLU` and :class:`ConvReLUPool`.

Like the fused blocks with batch norm (:mod:`nndl.nn.containers`), each holds the children
of its unfused form (``conv``, ``relu``[, ``pool``]), so its parameters are
``<block>.conv.W`` / ``<block>.conv.b`` and a summary or an exporter sees conv + ReLU
(+ pool); only forward/backward differ: one call of the fast sandwich
(:func:`nndl.conv_layer_utils.conv_relu_forward`, ``conv_relu_pool_forward``), which
applies ReLU and the max pool on blocks of channels while they are in cache.
"""

from __future__ import annotations

from typing import Any

from ..kernels.conv_blocks import (
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from .activations import ReLU
from .containers import Sequential
from .layers import Conv2d
from .module import Context, Module, register_layer
from .pooling import MaxPool2d

__all__ = ["ConvReLU", "ConvReLUPool"]


@register_layer
class ConvReLU(Sequential):
    """Fused conv - ReLU: (C, H, W) -> (filters, H', W'). Arguments as :class:`Conv2d`
    (``filters`` ... ``init``); children ``conv``, ``relu``."""

    type_name = "conv_relu"
    prefix = "block"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int | str = "same",
        bias: bool = True,
        init: str | float = "he_normal",
        name: str | None = None,
    ) -> None:
        self.conv = Conv2d(filters, kernel_size, stride, pad, bias, init, name="conv")
        super().__init__(self._children(), name)

    def _children(self) -> list[Module]:
        return [self.conv, ReLU(name="relu")]

    def config(self) -> dict[str, Any]:
        conv = self.conv.config()
        conv.pop("trainable")
        return conv

    def forward(self, x, ctx: Context):
        W, b = self.conv.weights(ctx, x)
        return conv_relu_forward(x, W, b, self.conv.conv_param)

    def backward(self, dout, cache, ctx: Context):
        dx, dw, db = conv_relu_backward(dout, cache)
        self.conv.store_grads(ctx, dw, db)
        return dx


@register_layer
class ConvReLUPool(ConvReLU):
    """Fused conv - ReLU - max pool (``pool_size`` windows, stride ``pool_size``):
    arguments as :class:`ConvReLU` plus ``pool_size`` (default 2); children ``conv``,
    ``relu``, ``pool``."""

    type_name = "conv_relu_pool"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int | str = "same",
        bias: bool = True,
        init: str | float = "he_normal",
        pool_size: int = 2,
        name: str | None = None,
    ) -> None:
        self.pool = MaxPool2d(pool_size, name="pool")
        super().__init__(filters, kernel_size, stride, pad, bias, init, name)

    def _children(self) -> list[Module]:
        return [*super()._children(), self.pool]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pool_size": self.pool.pool_size}

    def forward(self, x, ctx: Context):
        W, b = self.conv.weights(ctx, x)
        return conv_relu_pool_forward(x, W, b, self.conv.conv_param, self.pool.pool_param)

    def backward(self, dout, cache, ctx: Context):
        dx, dw, db = conv_relu_pool_backward(dout, cache)
        self.conv.store_grads(ctx, dw, db)
        return dx
