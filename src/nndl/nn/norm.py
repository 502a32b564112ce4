"""Layer and group normalisation layers (statistics per example, so no running
statistics); batch norm is in :mod:`nndl.nn.layers`. Shapes below are per example."""

from __future__ import annotations

import math
from typing import Any

from ..kernels.norm import groupnorm_backward_fast, groupnorm_forward_fast
from ..validation import float_arg, int_arg
from .module import Context, Module, ParamSpec, Shape, need_spatial, register_layer


class _GroupNorm(Module):
    """Shared by :class:`LayerNorm` and :class:`GroupNorm`: per-example statistics, a
    scale and a shift per channel (feature), no buffers."""

    groups = 1

    def __init__(self, eps: float = 1e-5, name: str | None = None) -> None:
        super().__init__(name)
        self.eps = float_arg("eps", eps, 0, math.inf, open_low=True)

    def config(self) -> dict[str, Any]:
        return dict(eps=self.eps)

    def param_specs(self, in_shape: Shape) -> dict[str, ParamSpec]:
        C = in_shape[0]
        return {
            "gamma": ParamSpec((C,), "ones", False, "norm_scale"),
            "beta": ParamSpec((C,), "zeros", False, "norm_shift"),
        }

    def flops(self, in_shape: Shape) -> int:
        # Mean and variance (3 per element), normalise (2), scale and shift (2).
        return 7 * math.prod(in_shape)

    def forward(self, x, ctx: Context):
        gamma, beta = ctx.params[self.key("gamma")], ctx.params[self.key("beta")]
        return groupnorm_forward_fast(x, gamma, beta, self.groups, {"eps": self.eps})

    def backward(self, dout, cache, ctx: Context):
        dx, dgamma, dbeta = groupnorm_backward_fast(dout, cache)
        ctx.grads[self.key("gamma")] = dgamma
        ctx.grads[self.key("beta")] = dbeta
        return dx


@register_layer
class LayerNorm(_GroupNorm):
    """Layer norm: each example normalised over all its values, (D,) -> (D,) or
    (C, H, W) -> (C, H, W); params ``gamma`` (ones) and ``beta`` (zeros) per feature
    (channel). Runs :func:`nndl.kernels.norm.layernorm_forward_fast` (a group norm with
    one group)."""

    type_name = "layernorm"
    prefix = "ln"

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) not in (1, 3):
            raise self.error(f"expected a (D,) or (C, H, W) input per example, got {in_shape}")
        return in_shape


@register_layer
class GroupNorm(_GroupNorm):
    """Group norm: each example's C channels in ``groups`` groups of C/groups, each
    normalised over its channels and positions; (C, H, W) -> (C, H, W), params ``gamma``
    (ones) and ``beta`` (zeros) per channel. Runs
    :func:`nndl.kernels.norm.groupnorm_forward_fast`."""

    type_name = "groupnorm"
    prefix = "gn"

    def __init__(self, groups: int = 32, eps: float = 1e-5, name: str | None = None) -> None:
        super().__init__(eps, name)
        self.groups = int_arg("groups", groups)

    def config(self) -> dict[str, Any]:
        return dict(groups=self.groups, eps=self.eps)

    def out_shape(self, in_shape: Shape) -> Shape:
        C = need_spatial(self, in_shape)[0]
        if C % self.groups:
            raise self.error(f"expected groups to divide the {C} channels, got {self.groups}")
        return in_shape


__all__ = ["LayerNorm", "GroupNorm"]
