"""Pooling and flattening: max and average pooling, global pooling, Flatten.

The window pools use the fast layers (``nndl.fast_layers``, ``nndl.kernels.pool``); their
windows have no padding and must tile the input exactly (a whole output size), unless
``floor`` is true: then rows and columns past the last whole window are left out (and get
zero gradient), as PyTorch's pools do by default (31 -> 15 for a 2x2 window).
"""

from __future__ import annotations

import math
from typing import Any

from ..kernels.max_pool import max_pool_backward_fast, max_pool_forward_fast
from ..kernels.pool import (
    avg_pool_backward_fast,
    avg_pool_forward_fast,
    global_avg_pool_backward_fast,
    global_avg_pool_forward_fast,
    global_max_pool_backward_fast,
    global_max_pool_forward_fast,
)
from ..validation import bool_arg, check_dout, int_arg, pool_output_hw
from .module import Context, Module, Shape, need_spatial, register_layer


class _Pool2d(Module):
    def __init__(
        self,
        pool_size: int = 2,
        stride: int | None = None,
        floor: bool = False,
        name: str | None = None,
    ):
        super().__init__(name)
        self.pool_size = int_arg("pool_size", pool_size)
        self.stride = self.pool_size if stride is None else int_arg("stride", stride)
        self.floor = bool_arg("floor", floor)
        k = self.pool_size
        self.pool_param = {"pool_height": k, "pool_width": k, "stride": self.stride}
        if self.floor:
            self.pool_param["floor"] = True

    def config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride, "floor": self.floor}

    def out_shape(self, in_shape: Shape) -> Shape:
        C, H, W = need_spatial(self, in_shape)
        k, s = self.pool_size, self.stride
        H_out, W_out = pool_output_hw(H, W, k, k, s, self.floor)
        if H_out is None or W_out is None:
            if k <= min(H, W):
                hint = "; floor: true leaves out the rows and columns past the last window"
            else:
                hint = ""
            raise self.error(
                f"a {k}x{k} window with stride {s} does not tile the input {in_shape}: "
                f"(H - {k}) / {s} = ({H} - {k}) / {s} must be a whole number >= 0 (likewise "
                f"W){hint}"
            )
        return (C, H_out, W_out)

    def forward(self, x, ctx: Context):
        return self._forward(x, self.pool_param)

    def backward(self, dout, cache, ctx: Context):
        return self._backward(dout, cache) if ctx.need_input_grad else None


@register_layer
class MaxPool2d(_Pool2d):
    """Max pooling over ``pool_size`` x ``pool_size`` windows every ``stride`` (default
    ``pool_size``): (C, H, W) -> (C, H', W'); ``k*k - 1`` comparisons per output.
    ``floor``: leave out the rows and columns past the last whole window (PyTorch's
    default mode; their gradient is zero)."""

    type_name = "maxpool2d"
    prefix = "pool"
    _forward = staticmethod(max_pool_forward_fast)
    _backward = staticmethod(max_pool_backward_fast)

    def flops(self, in_shape: Shape) -> int:
        return (self.pool_size**2 - 1) * math.prod(self.out_shape(in_shape))


@register_layer
class AvgPool2d(_Pool2d):
    """Average pooling, windows (and ``floor``) as :class:`MaxPool2d`; ``k*k`` FLOPs per
    output."""

    type_name = "avgpool2d"
    prefix = "avgpool"
    _forward = staticmethod(avg_pool_forward_fast)
    _backward = staticmethod(avg_pool_backward_fast)

    def flops(self, in_shape: Shape) -> int:
        return self.pool_size**2 * math.prod(self.out_shape(in_shape))


class _GlobalPool(Module):
    def out_shape(self, in_shape: Shape) -> Shape:
        return (need_spatial(self, in_shape)[0],)

    def forward(self, x, ctx: Context):
        return self._forward(x)

    def backward(self, dout, cache, ctx: Context):
        return self._backward(dout, cache) if ctx.need_input_grad else None


@register_layer
class GlobalAvgPool(_GlobalPool):
    """Mean of each channel: (C, H, W) -> (C,); ``H*W`` FLOPs per channel."""

    type_name = "global_avgpool"
    prefix = "gap"
    _forward = staticmethod(global_avg_pool_forward_fast)
    _backward = staticmethod(global_avg_pool_backward_fast)

    def flops(self, in_shape: Shape) -> int:
        return math.prod(in_shape)


@register_layer
class GlobalMaxPool(_GlobalPool):
    """Maximum of each channel: (C, H, W) -> (C,); ``H*W - 1`` comparisons per channel.
    The gradient goes to the first maximum in row-major order."""

    type_name = "global_maxpool"
    prefix = "gmp"
    _forward = staticmethod(global_max_pool_forward_fast)
    _backward = staticmethod(global_max_pool_backward_fast)

    def flops(self, in_shape: Shape) -> int:
        C, H, W = in_shape
        return C * (H * W - 1)


@register_layer
class Flatten(Module):
    """(d_1, ..., d_k) -> (d_1 * ... * d_k,): a reshape (a view, no copy, no FLOPs)."""

    type_name = "flatten"
    prefix = "flatten"
    allocates = False

    def out_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def flops(self, in_shape: Shape) -> int:
        return 0  # a reshape (a view)

    def forward(self, x, ctx: Context):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dout, cache, ctx: Context):
        check_dout("Flatten.backward", dout, (cache[0], math.prod(cache[1:])))
        return dout.reshape(cache) if ctx.need_input_grad else None


__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool", "GlobalMaxPool", "Flatten"]
