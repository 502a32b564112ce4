"""Fast layer and group normalisation: every (example, group) at once.

What it computes: :func:`nndl.functional.norm.groupnorm_forward` and
:func:`~nndl.functional.norm.layernorm_forward` and their gradients (the tests compare
them), with the same caches.

Why it is fast: the reference goes one (example, group) at a time; here x is viewed as
(N, G, C/G * H * W) and each statistic is one reduction over the last axis, so the work
is a few passes over memory whatever N and G are. A (C, H, W, N) view from the fast
conv is copied once by the reshape.

Memory: forward, ``xhat`` (x's size, kept in the cache) and the output; backward, two
arrays of x's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..functional.norm import check_group_norm
from ..validation import check_dout


def _forward(fn: str, x, gamma, beta, G, param):
    G, eps = check_group_norm(fn, x, gamma, beta, G, param)
    xp = get_array_module(x)
    N = x.shape[0]
    xg = x.reshape(N, G, -1)
    centred = xg - xg.mean(axis=2, keepdims=True)
    var = xp.multiply(centred, centred).mean(axis=2, keepdims=True)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = (centred * inv_std).reshape(x.shape)
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    out = xhat * gamma.reshape(bshape)
    out += beta.reshape(bshape)
    return out.astype(x.dtype, copy=False), (xhat, gamma, inv_std.reshape(N, G), G)


def _backward(fn: str, dout, cache):
    xhat, gamma, inv_std, G = cache
    check_dout(fn, dout, xhat.shape)
    axes = (0, *range(2, dout.ndim))
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    N = dout.shape[0]
    bshape = (1, dout.shape[1]) + (1,) * (dout.ndim - 2)
    d = (dout * gamma.reshape(bshape)).reshape(N, G, -1)
    xh = xhat.reshape(N, G, -1)
    dx = d - d.mean(axis=2, keepdims=True)
    dx -= xh * (d * xh).mean(axis=2, keepdims=True)
    dx *= inv_std.reshape(N, G, 1)
    return dx.reshape(dout.shape), dgamma, dbeta


def groupnorm_forward_fast(x, gamma, beta, G: int, gn_param: Mapping[str, Any]):
    """Fast :func:`nndl.functional.norm.groupnorm_forward` (same arguments and results)."""
    return _forward("groupnorm_forward_fast", x, gamma, beta, G, gn_param)


def groupnorm_backward_fast(dout, cache):
    """Gradients of :func:`groupnorm_forward_fast`: dx, dgamma, dbeta."""
    return _backward("groupnorm_backward_fast", dout, cache)


def layernorm_forward_fast(x, gamma, beta, ln_param: Mapping[str, Any]):
    """Fast :func:`nndl.functional.norm.layernorm_forward` (same arguments and results)."""
    return _forward("layernorm_forward_fast", x, gamma, beta, 1, ln_param)


def layernorm_backward_fast(dout, cache):
    """Gradients of :func:`layernorm_forward_fast`: dx, dgamma, dbeta."""
    return _backward("layernorm_backward_fast", dout, cache)


__all__ = [
    "groupnorm_backward_fast",
    "groupnorm_forward_fast",
    "layernorm_backward_fast",
    "layernorm_forward_fast",
]
