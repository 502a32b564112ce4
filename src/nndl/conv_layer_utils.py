"""Composite convolutional layers ("sandwiches") on the fast layers.

The sandwiches own their intermediate buffers, so they may work on them in place (the
caller's arrays are never modified):

* ReLU is applied in place to the conv / batch-norm output the sandwich just made.
* With pooling, ReLU runs AFTER the max pool, on a quarter of the data: max and ReLU
  commute exactly (``max(relu(a), relu(b)) == relu(max(a, b))``), and the gradients
  agree too: the pool routes each gradient to its window's first maximum, and ReLU's
  mask at that element is ``pooled > 0``, so masking the pooled gradient first and then
  scattering it is the same as scattering and then masking at full size.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from .backend import get_array_module
from .conv_layers import spatial_batchnorm_backward, spatial_batchnorm_forward
from .fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)


def _relu_inplace(a):
    """ReLU of a buffer the sandwich owns, in place; the result is also the mask's source."""
    return get_array_module(a).maximum(a, 0, out=a)


def _relu_grad(dout, out):
    """dout * (out > 0), in a new array (dout belongs to the caller)."""
    return get_array_module(dout).multiply(dout, out > 0)


def conv_relu_forward(x, w, b, conv_param: Mapping[str, Any]):
    """Convolution then ReLU: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> (N, F, H', W')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out = _relu_inplace(a)
    return out, (conv_cache, out)


def conv_relu_backward(dout, cache):
    """Gradients of :func:`conv_relu_forward`: dx, dw, db."""
    conv_cache, out = cache
    return conv_backward_fast(_relu_grad(dout, out), conv_cache)


def conv_relu_pool_forward(x, w, b, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]):
    """Convolution, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    pooled, pool_cache = max_pool_forward_fast(a, pool_param)
    out = _relu_inplace(pooled)
    return out, (conv_cache, pool_cache, out)


def conv_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_relu_pool_forward`: dx, dw, db."""
    conv_cache, pool_cache, out = cache
    da = max_pool_backward_fast(_relu_grad(dout, out), pool_cache)
    return conv_backward_fast(da, conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any]):
    """Convolution, spatial batch norm, ReLU: x (N, C, H, W) -> (N, F, H', W').

    gamma, beta (F,); ``bn_param`` as for :func:`nndl.conv_layers.spatial_batchnorm_forward`.
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out = _relu_inplace(an)
    return out, (conv_cache, bn_cache, out)


def conv_bn_relu_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_forward`: dx, dw, db, dgamma, dbeta."""
    conv_cache, bn_cache, out = cache
    dan, dgamma, dbeta = spatial_batchnorm_backward(_relu_grad(dout, out), bn_cache)
    dx, dw, db = conv_backward_fast(dan, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_bn_relu_pool_forward(
    x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any], pool_param
):
    """Convolution, spatial batch norm, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    pooled, pool_cache = max_pool_forward_fast(an, pool_param)
    out = _relu_inplace(pooled)
    return out, (conv_cache, bn_cache, pool_cache, out)


def conv_bn_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_pool_forward`: dx, dw, db, dgamma, dbeta."""
    conv_cache, bn_cache, pool_cache, out = cache
    dan = max_pool_backward_fast(_relu_grad(dout, out), pool_cache)
    dan, dgamma, dbeta = spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = conv_backward_fast(dan, conv_cache)
    return dx, dw, db, dgamma, dbeta
