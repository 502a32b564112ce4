"""Convolution, max pooling and spatial batch norm in their reference ("naive") form.

The naive layers are the readable definitions: plain loops over output positions that
say exactly what is computed. :mod:`nndl.fast_layers` holds the fast versions, which the
tests prove equal to these.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from .backend import get_array_module
from .checks import (
    check_dout,
    check_ndim,
    check_spatial,
    conv_shapes,
    output_size,
    pool_output_hw,
    pool_shapes,
)
from .layers import _bn_backward, _bn_forward


def conv_forward_naive(x, w, b, conv_param: Mapping[str, Any]):
    """Convolution (cross-correlation) of x with the filters w.

    Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W') with
    ``H' = 1 + (H + 2 * pad - HH) / stride`` (likewise W'). ``conv_param`` holds
    ``stride`` (>= 1) and ``pad`` (>= 0 zeros on each side of H and W). A size that does
    not divide evenly raises ``ValueError``.
    """
    stride, pad, H_out, W_out = conv_shapes("conv_forward_naive", x, w, b, conv_param)
    xp = get_array_module(x)
    N = x.shape[0]
    F, _, HH, WW = w.shape
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = xp.zeros((N, F, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                    out[n, f, i, j] = (window * w[f]).sum() + b[f]
    return out, (x, w, b, dict(conv_param))


def conv_backward_naive(dout, cache):
    """Gradients of :func:`conv_forward_naive`: dout (N, F, H', W') -> dx, dw, db."""
    x, w, b, conv_param = cache
    xp = get_array_module(x)
    stride, pad = conv_param["stride"], conv_param["pad"]
    fn = "conv_backward_naive"
    check_ndim(fn, "dout", dout, 4, "(N, F, H', W')")
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out, W_out = output_size(H, HH, stride, pad), output_size(W, WW, stride, pad)
    check_dout(fn, dout, (N, F, H_out, W_out))
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = xp.zeros_like(x_pad)
    dw = xp.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    g = dout[n, f, i, j]
                    dx_pad[n, :, hs : hs + HH, ws : ws + WW] += g * w[f]
                    dw[f] += g * x_pad[n, :, hs : hs + HH, ws : ws + WW]
    dx = dx_pad[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, db


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


def spatial_batchnorm_forward(x, gamma, beta, bn_param: MutableMapping[str, Any]):
    """Batch norm of x (N, C, H, W) per channel over N, H and W; gamma, beta (C,).

    ``bn_param`` is as for :func:`nndl.layers.batchnorm_forward`; the running statistics
    have shape (C,). Returns out (N, C, H, W).
    """
    fn = "spatial_batchnorm_forward"
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    return _bn_forward(fn, x, gamma, beta, bn_param, (0, 2, 3))


def spatial_batchnorm_backward(dout, cache):
    """Gradients of :func:`spatial_batchnorm_forward`: dx (N, C, H, W), dgamma, dbeta (C,)."""
    return _bn_backward("spatial_batchnorm_backward", dout, cache)


__all__ = [
    "conv_forward_naive",
    "conv_backward_naive",
    "max_pool_forward_naive",
    "max_pool_backward_naive",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
]


# --- average and global pooling --------------------------------------------------------


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


__all__ += [
    "avg_pool_forward_naive",
    "avg_pool_backward_naive",
    "global_avg_pool_forward",
    "global_avg_pool_backward",
    "global_max_pool_forward",
    "global_max_pool_backward",
]
