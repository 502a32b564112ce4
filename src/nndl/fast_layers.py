"""Fast convolution and max pooling in pure NumPy: strided windows plus one BLAS matmul.

Same signatures and results as the naive layers in :mod:`nndl.conv_layers` (the tests
prove it); only the caches differ. No compiler or build step is involved: im2col is a
strided view (``as_strided``) copied once into a column matrix, and col2im is a loop of
slice-adds over the kernel offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from numpy.lib.stride_tricks import as_strided

from .backend import get_array_module
from .checks import check_ndim, conv_shapes, pool_shapes


def _pad(x, pad: int):
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    x_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    x_pad[:, :, pad : pad + H, pad : pad + W] = x
    return x_pad


def _im2col(x_pad, HH: int, WW: int, stride: int, H_out: int, W_out: int):
    """Columns of shape (N, C*HH*WW, H_out*W_out) from the padded input."""
    N, C = x_pad.shape[:2]
    sN, sC, sH, sW = x_pad.strides
    windows = as_strided(
        x_pad,
        shape=(N, C, HH, WW, H_out, W_out),
        strides=(sN, sC, sH, sW, sH * stride, sW * stride),
        writeable=False,
    )
    return windows.reshape(N, C * HH * WW, H_out * W_out)


def _col2im(dcols, x_shape, HH: int, WW: int, stride: int, pad: int, H_out: int, W_out: int):
    """Sum column gradients (N, C*HH*WW, H_out*W_out) back into dx of ``x_shape``."""
    xp = get_array_module(dcols)
    N, C, H, W = x_shape
    dx_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dcols.dtype)
    d6 = dcols.reshape(N, C, HH, WW, H_out, W_out)
    for kh in range(HH):
        for kw in range(WW):
            dx_pad[:, :, kh : kh + stride * H_out : stride, kw : kw + stride * W_out : stride] += (
                d6[:, :, kh, kw]
            )
    if pad == 0:
        return dx_pad
    return dx_pad[:, :, pad : pad + H, pad : pad + W]


def conv_forward_fast(x, w, b, conv_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.conv_forward_naive` (same shapes and results)."""
    stride, pad, H_out, W_out = conv_shapes("conv_forward_fast", x, w, b, conv_param)
    N = x.shape[0]
    F = w.shape[0]
    cols = _im2col(_pad(x, pad), w.shape[2], w.shape[3], stride, H_out, W_out)
    out = w.reshape(F, -1) @ cols
    out += b.reshape(1, F, 1)
    out = out.reshape(N, F, H_out, W_out)
    return out, (x.shape, w, cols, stride, pad)


def conv_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.conv_backward_naive`: dout (N, F, H', W') -> dx, dw, db."""
    x_shape, w, cols, stride, pad = cache
    check_ndim("conv_backward_fast", "dout", dout, 4, "(N, F, H', W')")
    N, F, H_out, W_out = dout.shape
    d2 = dout.reshape(N, F, H_out * W_out)
    db = d2.sum(axis=(0, 2))
    dw = (d2 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    dcols = w.reshape(F, -1).T @ d2
    dx = _col2im(dcols, x_shape, w.shape[2], w.shape[3], stride, pad, H_out, W_out)
    return dx, dw, db


def _pool_slices(PH: int, PW: int, stride: int, H_out: int, W_out: int):
    """The (row, column) slices that pick window offset (di, dj) of every output."""
    for di in range(PH):
        for dj in range(PW):
            yield (
                slice(di, di + stride * H_out, stride),
                slice(dj, dj + stride * W_out, stride),
            )


def max_pool_forward_fast(x, pool_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.max_pool_forward_naive` (same shapes and results)."""
    PH, PW, stride, H_out, W_out = pool_shapes("max_pool_forward_fast", x, pool_param)
    xp = get_array_module(x)
    out = None
    for rs, cs in _pool_slices(PH, PW, stride, H_out, W_out):
        if out is None:
            out = x[:, :, rs, cs].copy()
        else:
            xp.maximum(out, x[:, :, rs, cs], out=out)
    return out, (x, out, (PH, PW, stride))


def max_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.max_pool_backward_naive`: dout -> dx (N, C, H, W).

    Like the naive layer, each output's gradient goes to the first maximum of its
    window in row-major order.
    """
    x, out, (PH, PW, stride) = cache
    check_ndim("max_pool_backward_fast", "dout", dout, 4, "(N, C, H', W')")
    xp = get_array_module(x)
    H_out, W_out = out.shape[2:]
    dx = xp.zeros_like(x)
    taken = xp.zeros(out.shape, dtype=bool)
    for rs, cs in _pool_slices(PH, PW, stride, H_out, W_out):
        hit = x[:, :, rs, cs] == out
        hit &= ~taken
        taken |= hit
        dx[:, :, rs, cs] += dout * hit
    return dx


__all__ = [
    "conv_forward_fast",
    "conv_backward_fast",
    "max_pool_forward_fast",
    "max_pool_backward_fast",
]
