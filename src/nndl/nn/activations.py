"""Elementwise activations: ReLU and GELU (tanh form). Any shape; no parameters."""

from __future__ import annotations

import math

from ..functional.activation import relu_backward, relu_forward
from ..kernels.fused import gelu_backward_fast, gelu_forward_fast
from .module import Context, Module, Shape, register_layer


class _Elementwise(Module):
    _flops_per_element = 1

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def flops(self, in_shape: Shape) -> int:
        return self._flops_per_element * math.prod(in_shape)

    def forward(self, x, ctx: Context):
        return self._forward(x)

    def backward(self, dout, cache, ctx: Context):
        return self._backward(dout, cache) if ctx.need_input_grad else None


@register_layer
class ReLU(_Elementwise):
    """``max(x, 0)``; 1 FLOP (a comparison) per element."""

    type_name = "relu"
    prefix = "relu"
    _forward = staticmethod(relu_forward)
    _backward = staticmethod(relu_backward)


@register_layer
class GELU(_Elementwise):
    """GELU in its tanh approximation (PyTorch ``GELU(approximate='tanh')``, ONNX
    ``Gelu(approximate="tanh")``); counted as 9 FLOPs per element (the operations of the
    formula as :func:`nndl.layers.gelu_forward` computes it, tanh as one). Runs
    :func:`nndl.kernels.fused.gelu_forward_fast` (one compiled pass with numba installed)."""

    type_name = "gelu"
    prefix = "gelu"
    _flops_per_element = 9
    _forward = staticmethod(gelu_forward_fast)
    _backward = staticmethod(gelu_backward_fast)


ACTIVATION_LAYERS: dict[str, type[Module]] = {cls.type_name: cls for cls in (ReLU, GELU)}
"""The layer of each activation in :data:`nndl.functional.activation.ACTIVATIONS` (the
fused blocks' ``activation``), by name."""

__all__ = ["ReLU", "GELU", "ACTIVATION_LAYERS"]
