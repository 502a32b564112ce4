"""Layers with parameters or state: convolution, linear, batch norm, dropout.

Each forward/backward calls the functional pair (``nndl.fast_layers``, ``nndl.layers``,
``nndl.conv_layers``); nothing here repeats their math. Shapes below are per example.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import get_array_module
from ..functional.dropout import dropout_backward, dropout_forward
from ..functional.linear import affine_backward, affine_forward
from ..functional.norm import batchnorm_backward, batchnorm_forward
from ..kernels.conv import conv_backward_fast, conv_bias_backward, conv_forward_fast
from ..kernels.fused import spatial_batchnorm_backward_fast, spatial_batchnorm_forward_fast
from ..validation import bool_arg, float_arg, int_arg, output_size
from .init import check_init
from .module import (
    BufferSpec,
    Context,
    Module,
    ParamSpec,
    Shape,
    need_spatial,
    register_layer,
)


def _zeros(x, n: int):
    """A constant zero bias in x's dtype (layers without a bias still call the
    functional layers, which take one)."""
    return get_array_module(x).zeros(n, dtype=x.dtype)


def _ones(x, n: int):
    return get_array_module(x).ones(n, dtype=x.dtype)


@register_layer
class Conv2d(Module):
    """2-d convolution (cross-correlation): (C, H, W) -> (filters, H', W').

    ``pad`` is ``'same'`` (``(kernel_size - 1) // 2``, odd kernels only: the size stays
    at stride 1), ``'valid'`` (0) or an int. Params ``W`` (F, C, k, k) with ``init``
    (He by default) and, with ``bias``, ``b`` (F,) zeros. ``trainable=False`` freezes
    the layer (for example a patch-whitening layer). Uses the fast conv; skips dx when
    ``ctx.need_input_grad`` is False (the network's first trainable layer), a frozen
    layer whose dx nobody needs skips its backward pass, and one whose filters are in
    ``ctx.frozen`` but whose bias learns computes only the bias gradient.
    """

    type_name = "conv2d"
    prefix = "conv"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int | str = "same",
        bias: bool = True,
        init: str | float = "he_normal",
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.filters = int_arg("filters", filters)
        self.kernel_size = int_arg("kernel_size", kernel_size)
        self.stride = int_arg("stride", stride)
        if pad == "same":
            if self.kernel_size % 2 == 0:
                raise ValueError(
                    f"pad: 'same' needs an odd kernel_size, got {self.kernel_size}; give "
                    "pad as an int or 'valid'"
                )
            self.pad: int | str = pad
        elif pad == "valid":
            self.pad = pad
        elif isinstance(pad, str):
            raise ValueError(f"pad: expected 'same', 'valid' or an int >= 0, got {pad!r}")
        else:
            self.pad = int_arg("pad", pad, 0)
        self.bias = bool_arg("bias", bias)
        self.init = check_init("init", init)
        self.trainable = bool_arg("trainable", trainable)
        padding = {"same": (self.kernel_size - 1) // 2, "valid": 0}.get(self.pad, self.pad)
        self.conv_param = {"stride": self.stride, "pad": padding}

    def config(self) -> dict[str, Any]:
        return dict(filters=self.filters, kernel_size=self.kernel_size, stride=self.stride,
                    pad=self.pad, bias=self.bias, init=self.init,
                    trainable=self.trainable)  # fmt: skip

    def out_shape(self, in_shape: Shape) -> Shape:
        _, H, W = need_spatial(self, in_shape)
        k, s, p = self.kernel_size, self.stride, self.conv_param["pad"]
        H_out, W_out = output_size(H, k, s, p), output_size(W, k, s, p)
        if H_out is None or W_out is None:
            raise self.error(
                f"a {k}x{k} kernel with stride {s} and pad {p} does not fit the input "
                f"{in_shape}: (H + 2*pad - k) / stride = ({H} + {2 * p} - {k}) / {s} must be "
                "a whole number >= 0 (likewise W)"
            )
        return (self.filters, H_out, W_out)

    def param_specs(self, in_shape: Shape) -> dict[str, ParamSpec]:
        C, k, F = in_shape[0], self.kernel_size, self.filters
        if self.init == "patch_whitening" and F != 2 * C * k * k:
            raise self.error(
                f"init 'patch_whitening' makes 2 * C * k * k = {2 * C * k * k} filters (each "
                f"eigenvector of the {k}x{k} patches of {C} channels and its negative); got "
                f"filters {F}"
            )
        specs = {
            "W": ParamSpec(
                (F, C, k, k), self.init, True, "weight", self.trainable, C * k * k, F * k * k
            )  # fmt: skip
        }
        if self.bias:
            specs["b"] = ParamSpec((F,), "zeros", False, "bias", self.trainable)
        return specs

    def flops(self, in_shape: Shape) -> int:
        F, H, W = self.out_shape(in_shape)
        macs = in_shape[0] * self.kernel_size**2 * F * H * W
        return 2 * macs + (F * H * W if self.bias else 0)

    def weights(self, ctx: Context, x):
        """``(W, b)`` from ``ctx.params`` (b zeros when the layer has no bias)."""
        W = ctx.params[self.key("W")]
        b = ctx.params[self.key("b")] if self.bias else _zeros(x, self.filters)
        return W, b

    def store_grads(self, ctx: Context, dw, db) -> None:
        ctx.grads[self.key("W")] = dw
        if self.bias:
            ctx.grads[self.key("b")] = db

    def conv_param_for(self, ctx: Context) -> dict[str, Any]:
        """The fast conv's ``conv_param`` for this pass (``recompute`` from ``ctx``)."""
        return {**self.conv_param, "recompute": True} if ctx.recompute else self.conv_param

    def forward(self, x, ctx: Context):
        W, b = self.weights(ctx, x)
        return conv_forward_fast(x, W, b, self.conv_param_for(ctx))

    def backward(self, dout, cache, ctx: Context):
        learns_w = self.trainable and self.key("W") not in ctx.frozen
        learns_b = self.bias and self.trainable and self.key("b") not in ctx.frozen
        if not (learns_w or learns_b or ctx.need_input_grad):
            return None  # a frozen first layer (patch whitening): nothing to compute
        if not (learns_w or ctx.need_input_grad):
            # Only the bias learns (airbench94_muon's whitening conv): no filter gradient.
            ctx.grads[self.key("b")] = conv_bias_backward(dout)
            return None
        dx, dw, db = conv_backward_fast(dout, cache, ctx.need_input_grad)
        self.store_grads(ctx, dw, db)
        return dx


@register_layer
class Linear(Module):
    """Affine layer on the flattened input: (d_1, ..., d_k) -> (units,).

    Params ``W`` (D, units) with ``init`` (He by default) and, with ``bias``, ``b``
    (units,). ``scale`` (a constant, not trained) multiplies the output, as airbench94's
    head multiplies its logits by 1/9.
    """

    type_name = "linear"
    prefix = "fc"

    def __init__(
        self,
        units: int,
        bias: bool = True,
        scale: float | None = None,
        init: str | float = "he_normal",
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.units = int_arg("units", units)
        self.bias = bool_arg("bias", bias)
        self.scale = None if scale is None else float_arg("scale", scale, 0, math.inf,
                                                          open_low=True)  # fmt: skip
        self.init = check_init("init", init, conv=False)
        self.trainable = bool_arg("trainable", trainable)

    def config(self) -> dict[str, Any]:
        return dict(units=self.units, bias=self.bias, scale=self.scale, init=self.init,
                    trainable=self.trainable)  # fmt: skip

    def out_shape(self, in_shape: Shape) -> Shape:
        return (self.units,)

    def param_specs(self, in_shape: Shape) -> dict[str, ParamSpec]:
        D, M = math.prod(in_shape), self.units
        specs = {"W": ParamSpec((D, M), self.init, True, "weight", self.trainable, D, M)}
        if self.bias:
            specs["b"] = ParamSpec((M,), "zeros", False, "bias", self.trainable)
        return specs

    def flops(self, in_shape: Shape) -> int:
        M = self.units
        return 2 * math.prod(in_shape) * M + (M if self.bias else 0) + (M if self.scale else 0)

    def forward(self, x, ctx: Context):
        W = ctx.params[self.key("W")]
        b = ctx.params[self.key("b")] if self.bias else _zeros(x, self.units)
        out, cache = affine_forward(x, W, b)
        if self.scale is not None:
            out *= out.dtype.type(self.scale)  # out is the layer's own new array
        return out, cache

    def backward(self, dout, cache, ctx: Context):
        if self.scale is not None:
            dout = dout * dout.dtype.type(self.scale)
        dx, dw, db = affine_backward(dout, cache)
        ctx.grads[self.key("W")] = dw
        if self.bias:
            ctx.grads[self.key("b")] = db
        return dx


class _BatchNorm(Module):
    """Shared by the spatial and 1-d batch norm; see :class:`BatchNorm2d`."""

    prefix = "bn"
    _ndim = 0

    def __init__(
        self,
        momentum: float = 0.9,
        eps: float = 1e-5,
        scale: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.momentum = float_arg("momentum", momentum, 0, 1)
        self.eps = float_arg("eps", eps, 0, math.inf, open_low=True)
        self.scale = bool_arg("scale", scale)

    def config(self) -> dict[str, Any]:
        return dict(momentum=self.momentum, eps=self.eps, scale=self.scale)

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != self._ndim:
            other = "batchnorm1d" if self._ndim == 3 else "batchnorm2d"
            raise self.error(
                f"expected a {'(C, H, W)' if self._ndim == 3 else '(D,)'} input per example, "
                f"got {in_shape}; for this input use {other}"
            )
        return in_shape

    def param_specs(self, in_shape: Shape) -> dict[str, ParamSpec]:
        C = in_shape[0]
        specs = {}
        if self.scale:
            specs["gamma"] = ParamSpec((C,), "ones", False, "norm_scale")
        specs["beta"] = ParamSpec((C,), "zeros", False, "norm_shift")
        return specs

    def buffer_specs(self, in_shape: Shape) -> dict[str, BufferSpec]:
        # Mean 0, variance 1: a model evaluated before training normalises with the identity.
        C = in_shape[0]
        return {"running_mean": BufferSpec((C,), 0.0), "running_var": BufferSpec((C,), 1.0)}

    def flops(self, in_shape: Shape) -> int:
        return 2 * math.prod(in_shape)  # a scale and a shift per element, as at inference

    def bn_param(self, ctx: Context) -> dict[str, Any]:
        """The functional layer's ``bn_param`` with the running statistics from ctx."""
        return {
            "mode": ctx.mode,
            "eps": self.eps,
            "momentum": self.momentum,
            "running_mean": ctx.buffers[self.key("running_mean")],
            "running_var": ctx.buffers[self.key("running_var")],
        }

    def affine(self, ctx: Context, x):
        """``(gamma, beta)``; gamma is ones when the scale is not learnt."""
        beta = ctx.params[self.key("beta")]
        gamma = ctx.params[self.key("gamma")] if self.scale else _ones(x, beta.shape[0])
        return gamma, beta

    def update_buffers(self, ctx: Context, bn_param: dict[str, Any]) -> None:
        if ctx.mode == "train":
            ctx.buffers[self.key("running_mean")] = bn_param["running_mean"]
            ctx.buffers[self.key("running_var")] = bn_param["running_var"]

    def store_grads(self, ctx: Context, dgamma, dbeta) -> None:
        if self.scale:
            ctx.grads[self.key("gamma")] = dgamma
        ctx.grads[self.key("beta")] = dbeta

    def forward(self, x, ctx: Context):
        gamma, beta = self.affine(ctx, x)
        bn_param = self.bn_param(ctx)
        out, cache = self._forward(x, gamma, beta, bn_param)
        self.update_buffers(ctx, bn_param)
        return out, cache

    def backward(self, dout, cache, ctx: Context):
        dx, dgamma, dbeta = self._backward(dout, cache)
        self.store_grads(ctx, dgamma, dbeta)
        return dx


@register_layer
class BatchNorm2d(_BatchNorm):
    """Spatial batch norm per channel: (C, H, W) -> (C, H, W).

    Params ``gamma`` (C,) ones (only with ``scale``; without it the scale is fixed at 1,
    as in airbench94) and ``beta`` (C,) zeros; buffers ``running_mean`` (zeros) and
    ``running_var`` (ones). ``momentum`` and ``eps`` as in the functional layer:
    ``running = momentum * running + (1 - momentum) * batch_stat`` (PyTorch's momentum
    m is nndl's ``1 - m``). Runs :func:`nndl.kernels.fused.spatial_batchnorm_forward_fast`.
    """

    type_name = "batchnorm2d"
    _ndim = 3
    _forward = staticmethod(spatial_batchnorm_forward_fast)
    _backward = staticmethod(spatial_batchnorm_backward_fast)


@register_layer
class BatchNorm1d(_BatchNorm):
    """Batch norm per feature: (D,) -> (D,); otherwise as :class:`BatchNorm2d`."""

    type_name = "batchnorm1d"
    _ndim = 1
    _forward = staticmethod(batchnorm_forward)
    _backward = staticmethod(batchnorm_backward)


@register_layer
class Dropout(Module):
    """Inverted dropout, any shape; ``p`` is the probability of KEEPING a unit (cs231n).

    Masks come from ``ctx.rng`` (the model's Generator); test mode is the identity.
    """

    type_name = "dropout"
    prefix = "drop"

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        self.p = float_arg("p", p, 0, 1, open_low=True)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def flops(self, in_shape: Shape) -> int:
        return 0  # the identity at inference, which FLOPs count

    def forward(self, x, ctx: Context):
        param: dict[str, Any] = {"mode": ctx.mode, "p": self.p}
        if ctx.rng is not None:
            param["rng"] = ctx.rng
        return dropout_forward(x, param)

    def backward(self, dout, cache, ctx: Context):
        return dropout_backward(dout, cache) if ctx.need_input_grad else None


__all__ = ["Conv2d", "Linear", "BatchNorm2d", "BatchNorm1d", "Dropout"]
