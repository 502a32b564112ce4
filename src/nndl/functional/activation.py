"""Activations in their reference form: ReLU and GELU (tanh approximation).

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import (
    check_dout,
    check_float,
)

Cache = Any


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Rectified linear unit ``max(x, 0)``, elementwise; any shape."""
    check_float("relu_forward", "x", x)
    out = get_array_module(x).maximum(x, 0)
    # out > 0 exactly where x > 0, so the output serves as the mask.
    return out, out


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of :func:`relu_forward`; dx has the shape of dout."""
    out = cache
    return dout * (out > 0)


_GELU_K = float(np.sqrt(2.0 / np.pi))


_GELU_A = 0.044715


def gelu_forward(x):
    """Gaussian error linear unit, tanh approximation, elementwise; any shape.

    ``out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``: the formula of
    PyTorch's ``GELU(approximate='tanh')`` and ONNX's ``Gelu(approximate="tanh")``. The
    exact GELU needs erf, which NumPy lacks; the two differ by less than 1e-3.
    """
    check_float("gelu_forward", "x", x)
    xp = get_array_module(x)
    t = xp.multiply(x, x)
    t *= _GELU_A
    t += 1
    t *= x
    t *= _GELU_K
    xp.tanh(t, out=t)
    out = t + 1
    out *= x
    out *= 0.5
    return out, (x, t)


def gelu_backward(dout, cache):
    """Gradient of :func:`gelu_forward`; dx has the shape of dout.

    With ``t = tanh(u)``, ``u = k * (x + a * x**3)``:
    ``d out / dx = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * a * x**2)``.
    """
    x, t = cache
    check_dout("gelu_backward", dout, x.shape)
    xp = get_array_module(x)
    du = xp.multiply(x, x)
    du *= 3 * _GELU_A * _GELU_K
    du += _GELU_K
    s = xp.multiply(t, t)
    xp.subtract(1, s, out=s)
    s *= du
    s *= x
    s += t
    s += 1
    s *= 0.5
    s *= dout
    return s


# --- the activation registry ------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """An elementwise activation as nndl knows it: ``name`` (in specs and the fused
    blocks' ``activation``), ``code`` (its number in the compiled kernels of
    :mod:`nndl.kernels.numba_fused`; 0 is "none") and its reference ``forward`` and
    ``backward``."""

    name: str
    code: int
    forward: Callable[[Any], tuple[Any, Cache]]
    backward: Callable[[Any, Cache], Any]


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", 1, relu_forward, relu_backward),
        Activation("gelu", 2, gelu_forward, gelu_backward),
    )
}
"""The one registry of activations: the fused passes, their compiled kernels and the
layer objects (:data:`nndl.nn.activations.ACTIVATION_LAYERS`) take their names and codes
from here (tests/test_layer_registry.py checks they agree)."""

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "gelu_backward",
    "gelu_forward",
    "relu_backward",
    "relu_forward",
]
