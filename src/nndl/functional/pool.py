"""Pooling in its reference ("naive") form: max and average pooling over windows,
global average and global max pooling.

The naive layers are the readable definitions; :mod:`nndl.kernels.max_pool` and
:mod:`nndl.kernels.pool` hold the fast versions, which the tests prove equal to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..validation import (
    check_dout,
    check_ndim,
    check_spatial,
    pool_output_hw,
    pool_shapes,
)


def max_pool_forward_naive(x, pool_param: Mapping[str, Any]):
    """Max pooling over windows of ``pool_height`` x ``pool_width`` every ``stride``.

    Shapes: x (N, C, H, W) -> out (N, C, H', W') with ``H' = 1 + (H - PH) / stride``
    (likewise W'); no padding. Windows may overlap (stride < window). With
    ``pool_param['floor']`` True, ``H' = 1 + (H - PH) // stride``: rows and columns past
    the last whole window are left out (PyTorch's default).
    """
    PH, PW, stride, H_out, W_out = pool_shapes("max_pool_forward_naive", x, pool_param)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    out[n, c, i, j] = x[n, c, hs : hs + PH, ws : ws + PW].max()
    return out, (x, dict(pool_param))


def max_pool_backward_naive(dout, cache):
    """Gradient of :func:`max_pool_forward_naive`: dout (N, C, H', W') -> dx (N, C, H, W).

    Each output's gradient goes to one input: the first maximum of its window in
    row-major order, so ties are routed to exactly one element.
    """
    x, pool_param = cache
    xp = get_array_module(x)
    PH, PW, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    fn = "max_pool_backward_naive"
    check_ndim(fn, "dout", dout, 4, "(N, C, H', W')")
    N, C, H, W = x.shape
    H_out, W_out = pool_output_hw(H, W, PH, PW, stride, pool_param.get("floor", False))
    check_dout(fn, dout, (N, C, H_out, W_out))
    dx = xp.zeros_like(x)  # floor mode: rows and columns past the last window stay zero
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    window = x[n, c, hs : hs + PH, ws : ws + PW]
                    di, dj = divmod(int(window.argmax()), PW)
                    dx[n, c, hs + di, ws + dj] += dout[n, c, i, j]
    return dx


def avg_pool_forward_naive(x, pool_param: Mapping[str, Any]):
    """Average pooling over windows of ``pool_height`` x ``pool_width`` every ``stride``.

    Shapes and ``pool_param`` as for :func:`max_pool_forward_naive`: x (N, C, H, W) ->
    out (N, C, H', W'), no padding; windows may overlap.
    """
    PH, PW, stride, H_out, W_out = pool_shapes("avg_pool_forward_naive", x, pool_param)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    out[n, c, i, j] = x[n, c, hs : hs + PH, ws : ws + PW].mean()
    return out, (x.shape, dict(pool_param))


def avg_pool_backward_naive(dout, cache):
    """Gradient of :func:`avg_pool_forward_naive`: dout (N, C, H', W') -> dx (N, C, H, W).

    Each output's gradient is shared equally by the ``PH * PW`` inputs of its window.
    """
    x_shape, pool_param = cache
    PH, PW, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    fn = "avg_pool_backward_naive"
    check_ndim(fn, "dout", dout, 4, "(N, C, H', W')")
    N, C, H, W = x_shape
    H_out, W_out = pool_output_hw(H, W, PH, PW, stride, pool_param.get("floor", False))
    check_dout(fn, dout, (N, C, H_out, W_out))
    xp = get_array_module(dout)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    dx[n, c, hs : hs + PH, ws : ws + PW] += dout[n, c, i, j] / (PH * PW)
    return dx


def global_avg_pool_forward(x):
    """Mean of each channel over its whole map: x (N, C, H, W) -> out (N, C)."""
    check_spatial("global_avg_pool_forward", x)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.zeros((N, C), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            out[n, c] = x[n, c].mean()
    return out, x.shape


def global_avg_pool_backward(dout, cache):
    """Gradient of :func:`global_avg_pool_forward`: dout (N, C) -> dx (N, C, H, W)."""
    x_shape = cache
    fn = "global_avg_pool_backward"
    check_ndim(fn, "dout", dout, 2, "(N, C)")
    check_dout(fn, dout, x_shape[:2])
    N, C, H, W = x_shape
    dx = get_array_module(dout).zeros(x_shape, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            dx[n, c] = dout[n, c] / (H * W)
    return dx


def global_max_pool_forward(x):
    """Maximum of each channel over its whole map: x (N, C, H, W) -> out (N, C)."""
    check_spatial("global_max_pool_forward", x)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.zeros((N, C), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            out[n, c] = x[n, c].max()
    return out, x


def global_max_pool_backward(dout, cache):
    """Gradient of :func:`global_max_pool_forward`: dout (N, C) -> dx (N, C, H, W).

    As in max pooling, each channel's gradient goes to its first maximum in row-major
    order, so ties are routed to exactly one element.
    """
    x = cache
    fn = "global_max_pool_backward"
    check_ndim(fn, "dout", dout, 2, "(N, C)")
    check_dout(fn, dout, x.shape[:2])
    N, C, H, W = x.shape
    dx = get_array_module(dout).zeros(x.shape, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            i, j = divmod(int(x[n, c].argmax()), W)
            dx[n, c, i, j] = dout[n, c]
    return dx


__all__ = [
    "avg_pool_backward_naive",
    "avg_pool_forward_naive",
    "global_avg_pool_backward",
    "global_avg_pool_forward",
    "global_max_pool_backward",
    "global_max_pool_forward",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
]
