"""Composite convolutional layers ("sandwiches") on the fast layers.

Every sandwich is one call of :func:`conv_block_forward`: a fast convolution followed by
any of batch norm, an activation and a max pool, in the order CS231n and ResNets use
(``conv - BN - act - pool``) or airbench's (``conv - pool - BN - act``,
``pool_first=True``). The stages after the conv run fused on blocks of channels
(:mod:`nndl.kernels.fused`, compiled with numba when it is installed): the conv's output
buffer is normalised in place and the caller's arrays are never modified. In airbench's
order with a 2x2 stride-2 pool after a Winograd F(4x4,3x3) conv, the pool runs inside
the conv's output transform (:func:`nndl.fast_layers.conv_pool_forward_fast`), so the
full-size conv output is never stored. Pools may
use ``pool_param['floor']`` (PyTorch's default: rows and columns past the last whole
window are left out).

Activations: ``'relu'``, ``'gelu'`` (tanh form; both fused) or ``None``; any other
activation is a pair ``(forward, backward)`` of functional layers
(``forward(a) -> (out, cache)``, ``backward(dout, cache) -> da``), applied after the
fused stages, so it must come last: ``conv - BN - act`` or ``conv - pool - BN - act``.

Inputs and outputs are (N, C, H, W) arrays; those the fast layers return are views of
(C, H, W, N) buffers (see :mod:`nndl.fast_layers`), which the next sandwich reads
without a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from .conv import (
    _conv_pool_fused,
    conv_backward_fast,
    conv_forward_fast,
    conv_pool_backward_fast,
    conv_pool_forward_fast,
    from_internal,
    to_internal,
)
from .fused import ACTIVATIONS, plan, post_conv_backward, post_conv_forward

Activation = str | None | tuple[Callable[..., Any], Callable[..., Any]]


def conv_block_forward(
    x,
    w,
    b,
    conv_param: Mapping[str, Any],
    gamma=None,
    beta=None,
    bn_param: MutableMapping[str, Any] | None = None,
    pool_param: Mapping[str, Any] | None = None,
    activation: Activation = "relu",
    pool_first: bool = False,
):
    """Convolution, then [batch norm], [activation] and [max pool], fused.

    Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,), gamma and beta (F,) -> out
    (N, F, H'', W''). Batch norm runs when ``bn_param`` is given (a dict as for
    :func:`nndl.conv_layers.spatial_batchnorm_forward`); the pool when ``pool_param``
    is. Order: conv - BN - act - pool, or conv - pool - BN - act with ``pool_first``.
    ``activation``: ``'relu'``, ``'gelu'``, ``None`` or a ``(forward, backward)`` pair
    (applied last, so not allowed with a pool after it).
    """
    fn = "conv_block_forward"
    custom = activation not in ACTIVATIONS
    if custom and pool_param is not None and not pool_first:
        raise ValueError(
            f"{fn}: a custom activation must come last; with a max pool after it, use "
            "pool_first=True or separate layers"
        )
    if custom and not (
        isinstance(activation, tuple) and len(activation) == 2 and all(map(callable, activation))
    ):
        raise ValueError(
            f"{fn}: expected activation 'relu', 'gelu', None or a (forward, backward) pair "
            f"of functions, got {activation!r}"
        )
    act = None if custom else activation
    if pool_first and pool_param is not None and _conv_pool_fused(x, w, conv_param, pool_param):
        # conv and pool in one pass (Winograd tiles pooled as they are made)
        a, inner = conv_pool_forward_fast(x, w, b, conv_param, pool_param)
        conv_cache = ("conv_pool", inner)
        ac = to_internal(a)
        p = plan(fn, ac, bn_param is not None, act, None, False)
    else:
        a, inner = conv_forward_fast(x, w, b, conv_param)
        conv_cache = ("conv", inner)
        ac = to_internal(a)
        p = plan(fn, ac, bn_param is not None, act, pool_param, pool_first)
    out, post_cache = post_conv_forward(ac, p, fn, gamma, beta, bn_param)
    out = from_internal(out)
    act_cache = None
    if custom:
        out, act_cache = activation[0](out)
    return out, (conv_cache, post_cache, activation if custom else None, act_cache)


def conv_block_backward(dout, cache, input_grad: bool = True):
    """Gradients of :func:`conv_block_forward`: dx, dw, db, dgamma, dbeta (the last two
    None without batch norm; dx None when ``conv_param['input_grad']`` or
    ``input_grad`` here is False)."""
    conv_cache, post_cache, activation, act_cache = cache
    if activation is not None:
        dout = activation[1](dout, act_cache)
    da, dgamma, dbeta = post_conv_backward(to_internal(dout), post_cache, "conv_block_backward")
    kind, inner = conv_cache
    backward = conv_pool_backward_fast if kind == "conv_pool" else conv_backward_fast
    dx, dw, db = backward(from_internal(da), inner, input_grad)
    return dx, dw, db, dgamma, dbeta


def conv_relu_forward(x, w, b, conv_param: Mapping[str, Any]):
    """Convolution then ReLU: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> (N, F, H', W')."""
    return conv_block_forward(x, w, b, conv_param)


def conv_relu_backward(dout, cache):
    """Gradients of :func:`conv_relu_forward`: dx, dw, db."""
    return conv_block_backward(dout, cache)[:3]


def conv_relu_pool_forward(x, w, b, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]):
    """Convolution, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    return conv_block_forward(x, w, b, conv_param, pool_param=pool_param)


def conv_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_relu_pool_forward`: dx, dw, db."""
    return conv_block_backward(dout, cache)[:3]


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any]):
    """Convolution, spatial batch norm, ReLU: x (N, C, H, W) -> (N, F, H', W').

    gamma, beta (F,); ``bn_param`` as for :func:`nndl.conv_layers.spatial_batchnorm_forward`.
    """
    return conv_block_forward(x, w, b, conv_param, gamma, beta, bn_param)


def conv_bn_relu_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_forward`: dx, dw, db, dgamma, dbeta."""
    return conv_block_backward(dout, cache)


def conv_bn_relu_pool_forward(
    x, w, b, gamma, beta, conv_param, bn_param: MutableMapping[str, Any], pool_param
):
    """Convolution, spatial batch norm, ReLU, max pool: x (N, C, H, W) -> (N, F, H'', W'')."""
    return conv_block_forward(x, w, b, conv_param, gamma, beta, bn_param, pool_param)


def conv_bn_relu_pool_backward(dout, cache):
    """Gradients of :func:`conv_bn_relu_pool_forward`: dx, dw, db, dgamma, dbeta."""
    return conv_block_backward(dout, cache)


def conv_pool_bn_relu_forward(
    x, w, b, gamma, beta, conv_param, pool_param, bn_param: MutableMapping[str, Any]
):
    """Convolution, max pool, spatial batch norm, ReLU (airbench's order):
    x (N, C, H, W) -> (N, F, H'', W''); gamma, beta (F,)."""
    return conv_block_forward(x, w, b, conv_param, gamma, beta, bn_param, pool_param, "relu", True)


def conv_pool_bn_relu_backward(dout, cache):
    """Gradients of :func:`conv_pool_bn_relu_forward`: dx, dw, db, dgamma, dbeta."""
    return conv_block_backward(dout, cache)


__all__ = [
    "conv_block_backward",
    "conv_block_forward",
    "conv_bn_relu_backward",
    "conv_bn_relu_forward",
    "conv_bn_relu_pool_backward",
    "conv_bn_relu_pool_forward",
    "conv_pool_bn_relu_backward",
    "conv_pool_bn_relu_forward",
    "conv_relu_backward",
    "conv_relu_forward",
    "conv_relu_pool_backward",
    "conv_relu_pool_forward",
]
