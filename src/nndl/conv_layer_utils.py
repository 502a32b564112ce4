"""Composite convolutional layers ("sandwiches") on the fast layers."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from .conv_layers import spatial_batchnorm_backward, spatial_batchnorm_forward
from .fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from .layers import relu_backward, relu_forward


def conv_relu_forward(x, w, b, conv_param: Mapping[str, Any]):
    """Convolution then ReLU: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> (N, F, H', W')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Gradients of :func:`conv_relu_forward`: dx, dw, db."""
    conv_cache, relu_cache = cache
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache)


def conv_relu_pool_forward(x, w, b, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]):
    """Convolution, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_relu_pool_forward`: dx, dw, db."""
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any]):
    """Convolution, spatial batch norm, ReLU: x (N, C, H, W) -> (N, F, H', W')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_forward`: dx, dw, db, dgamma, dbeta."""
    conv_cache, bn_cache, relu_cache = cache
    dan, dgamma, dbeta = spatial_batchnorm_backward(relu_backward(dout, relu_cache), bn_cache)
    dx, dw, db = conv_backward_fast(dan, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_bn_relu_pool_forward(
    x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any], pool_param
):
    """Convolution, spatial batch norm, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    s, inner_cache = conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (inner_cache, pool_cache)


def conv_bn_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_pool_forward`: dx, dw, db, dgamma, dbeta."""
    inner_cache, pool_cache = cache
    return conv_bn_relu_backward(max_pool_backward_fast(dout, pool_cache), inner_cache)
