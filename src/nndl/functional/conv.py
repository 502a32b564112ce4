"""Convolution in its reference ("naive") form.

The naive layers are the readable definitions: plain loops over output positions that
say exactly what is computed. :mod:`nndl.kernels.conv` holds the fast versions, which the
tests prove equal to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..validation import (
    check_dout,
    check_ndim,
    conv_shapes,
    output_size,
)


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


__all__ = [
    "conv_forward_naive",
    "conv_backward_naive",
]
