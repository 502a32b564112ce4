"""Fast average pooling and global (average / max) pooling in vectorised NumPy.

Same signatures and results as the reference layers in :mod:`nndl.conv_layers`
(``avg_pool_*_naive``, ``global_*_pool_*``), which the tests prove; only the caches differ.

Average pooling is separable, like the fast max pool: a sum over the window's columns
(x (N, C, H, W) -> (N, C, H, W')), then over its rows, each a running sum of strided
slices, and one scaling by ``1 / (PH * PW)``. The backward pass scatters the scaled
gradient back through the same slices: lines that disjoint windows cover are written by
assignment, only overlapping window offsets are added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..validation import check_dout, check_ndim, check_spatial, pool_shapes


def _window_sum(x, K: int, stride: int, n_out: int, axis: int):
    """Sum over K offsets of the strided slices ``x[.., k::stride][:n_out]`` along ``axis``."""
    lead = (slice(None),) * axis
    out = x[lead + (slice(0, stride * n_out, stride),)].copy()
    for k in range(1, K):
        out += x[lead + (slice(k, k + stride * n_out, stride),)]
    return out


def _window_spread(d, K: int, stride: int, size: int, axis: int):
    """Transpose of :func:`_window_sum`: an array of length ``size`` along ``axis`` where
    each strided slice ``k::stride`` receives ``d`` (added where windows overlap)."""
    xp = get_array_module(d)
    shape = list(d.shape)
    n_out = shape[axis]
    shape[axis] = size
    lead = (slice(None),) * axis
    # Offsets k < stride hit disjoint lines, so they can be assigned; the lines they
    # miss (between windows, or past the last window) must be zero.
    covered = min(K, stride) == stride and stride * n_out == size
    out = xp.empty(shape, dtype=d.dtype) if covered else xp.zeros(shape, dtype=d.dtype)
    for k in range(K):
        target = out[lead + (slice(k, k + stride * n_out, stride),)]
        if k < stride:
            target[...] = d
        else:
            target += d
    return out


def avg_pool_forward_fast(x, pool_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.avg_pool_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W) -> out (N, C, H', W'), in x's dtype; windows may overlap.
    The cache holds only shapes.
    """
    PH, PW, s, H_out, W_out = pool_shapes("avg_pool_forward_fast", x, pool_param)
    out = _window_sum(_window_sum(x, PW, s, W_out, 3), PH, s, H_out, 2)
    out *= out.dtype.type(1.0 / (PH * PW))
    return out, (x.shape, (PH, PW, s))


def avg_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.avg_pool_backward_naive`: dout -> dx (N, C, H, W)."""
    fn = "avg_pool_backward_fast"
    x_shape, (PH, PW, s) = cache
    N, C, H, W = x_shape
    check_ndim(fn, "dout", dout, 4, "(N, C, H', W')")
    check_dout(fn, dout, (N, C, 1 + (H - PH) // s, 1 + (W - PW) // s))
    g = dout * dout.dtype.type(1.0 / (PH * PW))
    return _window_spread(_window_spread(g, PH, s, H, 2), PW, s, W, 3)


def global_avg_pool_forward_fast(x):
    """Fast :func:`nndl.conv_layers.global_avg_pool_forward`: x (N, C, H, W) -> (N, C)."""
    check_spatial("global_avg_pool_forward_fast", x)
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.global_avg_pool_backward`: dout (N, C) -> dx."""
    x_shape = cache
    fn = "global_avg_pool_backward_fast"
    check_ndim(fn, "dout", dout, 2, "(N, C)")
    check_dout(fn, dout, x_shape[:2])
    xp = get_array_module(dout)
    dx = xp.empty(x_shape, dtype=dout.dtype)
    dx[...] = (dout * dout.dtype.type(1.0 / (x_shape[2] * x_shape[3])))[:, :, None, None]
    return dx


def global_max_pool_forward_fast(x):
    """Fast :func:`nndl.conv_layers.global_max_pool_forward`: x (N, C, H, W) -> (N, C).

    The cache holds the flat index of each channel's first maximum, not x.
    """
    check_spatial("global_max_pool_forward_fast", x)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    idx = flat.argmax(axis=2)[:, :, None]  # argmax returns the first maximum
    out = xp.take_along_axis(flat, idx, axis=2)[:, :, 0]
    return out, (x.shape, idx)


def global_max_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.global_max_pool_backward`: dout (N, C) -> dx."""
    x_shape, idx = cache
    fn = "global_max_pool_backward_fast"
    check_ndim(fn, "dout", dout, 2, "(N, C)")
    check_dout(fn, dout, x_shape[:2])
    xp = get_array_module(dout)
    N, C = x_shape[:2]
    dx = xp.zeros((N, C, x_shape[2] * x_shape[3]), dtype=dout.dtype)
    xp.put_along_axis(dx, idx, dout[:, :, None], axis=2)
    return dx.reshape(x_shape)


__all__ = [
    "avg_pool_forward_fast",
    "avg_pool_backward_fast",
    "global_avg_pool_forward_fast",
    "global_avg_pool_backward_fast",
    "global_max_pool_forward_fast",
    "global_max_pool_backward_fast",
]
