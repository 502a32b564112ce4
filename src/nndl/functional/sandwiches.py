"""Composite fully connected layers ("sandwiches") built from the functional layers."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .activation import relu_backward, relu_forward
from .linear import affine_backward, affine_forward
from .norm import batchnorm_backward, batchnorm_forward


def affine_relu_forward(x, w, b):
    """Affine then ReLU: x (N, d_1, ..., d_k), w (D, M), b (M,) -> out (N, M)."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Gradients of :func:`affine_relu_forward`: dx, dw, db."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


def affine_batchnorm_relu_forward(x, w, b, gamma, beta, bn_param: MutableMapping[str, Any]):
    """Affine, batch norm, ReLU: x (N, ...), w (D, M), b, gamma, beta (M,) -> out (N, M)."""
    a, fc_cache = affine_forward(x, w, b)
    an, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (fc_cache, bn_cache, relu_cache)


def affine_batchnorm_relu_backward(dout, cache):
    """Gradients of :func:`affine_batchnorm_relu_forward`: dx, dw, db, dgamma, dbeta."""
    fc_cache, bn_cache, relu_cache = cache
    dan, dgamma, dbeta = batchnorm_backward(relu_backward(dout, relu_cache), bn_cache)
    dx, dw, db = affine_backward(dan, fc_cache)
    return dx, dw, db, dgamma, dbeta


__all__ = [
    "affine_relu_forward",
    "affine_relu_backward",
    "affine_batchnorm_relu_forward",
    "affine_batchnorm_relu_backward",
]
