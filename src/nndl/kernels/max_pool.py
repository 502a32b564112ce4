"""Separable max pooling for :mod:`nndl.fast_layers` and :mod:`nndl.kernels.fused`: running maxima
of strided slices.

What it computes: the max pool of x over PH x PW windows with any stride (windows may
overlap) and its gradient, each output's gradient going to the first maximum of its
window in row-major order, exactly as :func:`nndl.conv_layers.max_pool_forward_naive`.

Why it is fast: a max over the window's columns, then over its rows, each a running
maximum of whole strided slices (a few NumPy calls per window offset, not per window),
on blocks of channels on :mod:`nndl.kernels.parallel`'s threads; on the (C, H, W, N) layout
every slice keeps contiguous runs of N.

Memory: two uint8 index arrays (x's size / stride and the output's size), kept in the
cache in place of x; per thread, a scratch buffer of x's size / stride for the
intermediate and one of the output's size for the comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..validation import check_dout, check_ndim, pool_shapes
from . import parallel
from .layout import from_internal, is_internal
from .scratch import scratch

# --- max pooling ------------------------------------------------------------------------
# Separable: a max over the window's columns (x -> a, W shrinks to W'), then over its rows
# (a -> out), each a running maximum of strided slices. A uint8 index per stage records
# which slice won; strict '>' keeps the first maximum, so the winner is the first maximum
# of the window in row-major order, exactly the naive layer's argmax. The passes run on
# the (C, H, W, N) view when x is stored that way (slices keep runs of N), else on
# (N, C, H, W); either way on blocks of the leading axis, one per pool thread.


def _along(a, axis: int, sl: slice):
    index = [slice(None)] * a.ndim
    index[axis] = sl
    return a[tuple(index)]


def running_max(views, out, idx) -> None:
    """out = elementwise max of equally shaped ``views``; idx (uint8) = the index of the
    first view that holds it."""
    xp = get_array_module(out)
    xp.copyto(out, views[0])
    idx[...] = 0
    gt = scratch(xp, "pool_gt", out.shape, xp.uint8)
    for k, v in enumerate(views[1:], start=1):
        xp.greater(v, out, out=gt.view(bool))
        xp.maximum(out, v, out=out)
        # k exceeds every earlier index, so max(idx, k * gt) sets idx = k exactly where
        # v won; far cheaper than a masked copyto.
        gt *= xp.uint8(k)
        xp.maximum(idx, gt, out=idx)


def scatter(d, idx, K: int, stride: int, n_out: int, dst, axis: int) -> None:
    """Route d into the uninitialised dst: dst[.., k + stride*i, ..] (+)= d * (idx == k).

    The first ``min(K, stride)`` offsets hit disjoint lines that together cover
    ``[0, stride * n_out)``, so they are written by assignment; only the lines past that
    are zeroed first, and offsets ``k >= stride`` (overlapping windows) are added.
    """
    xp = get_array_module(d)
    if K < stride:
        dst[...] = 0  # lines between windows get no gradient
    else:
        _along(dst, axis, slice(stride * n_out, None))[...] = 0
    mask = scratch(xp, "pool_mask", d.shape, bool)
    for k in range(K):
        target = _along(dst, axis, slice(k, k + stride * n_out, stride))
        xp.equal(idx, k, out=mask)
        if k < stride:
            xp.multiply(d, mask, out=target)
        else:
            tmp = scratch(xp, "pool_tmp", d.shape, d.dtype)
            xp.multiply(d, mask, out=tmp)
            target += tmp


def pool_layout(x):
    """(view, axes, to_user): x as (C, H, W, N) when stored so, else as (N, C, H, W)."""
    if x.ndim == 4 and is_internal(x) and not x.flags.c_contiguous:
        return x.transpose(1, 2, 3, 0), (1, 2), from_internal
    return x, (2, 3), lambda a: a


def pool_forward_blocks(xv, axes, PH, PW, s, H_out, W_out):
    """Max pool of xv over ``axes`` (rows, cols): out, idx_w, idx_h in xv's axis order."""
    xp = get_array_module(xv)
    ah, aw = axes
    shape_a = list(xv.shape)
    shape_a[aw] = W_out
    shape_o = list(shape_a)
    shape_o[ah] = H_out
    out = xp.empty(shape_o, dtype=xv.dtype)
    idx_w = xp.empty(shape_a, dtype=xp.uint8)
    idx_h = xp.empty(shape_o, dtype=xp.uint8)

    def block(c0: int, c1: int) -> None:
        xb = xv[c0:c1]
        a = scratch(xp, "pool_rows", (c1 - c0, *shape_a[1:]), xv.dtype)
        cols = [_along(xb, aw, slice(j, j + s * W_out, s)) for j in range(PW)]
        running_max(cols, a, idx_w[c0:c1])
        rows = [_along(a, ah, slice(i, i + s * H_out, s)) for i in range(PH)]
        running_max(rows, out[c0:c1], idx_h[c0:c1])

    parallel.run(block, parallel.blocks(xv.shape[0], xv[0].nbytes))
    return out, idx_w, idx_h


def pool_backward_blocks(dv, idx_w, idx_h, x_shape, axes, PH, PW, s):
    """dx in the forward's axis order from dv (the output's gradient, same order)."""
    xp = get_array_module(dv)
    ah, aw = axes
    H_out, W_out = idx_h.shape[ah], idx_h.shape[aw]
    dx = xp.empty(x_shape, dtype=dv.dtype)

    def block(c0: int, c1: int) -> None:
        da = scratch(xp, "pool_rows", (c1 - c0, *idx_w.shape[1:]), dv.dtype)
        scatter(dv[c0:c1], idx_h[c0:c1], PH, s, H_out, da, axis=ah)
        scatter(da, idx_w[c0:c1], PW, s, W_out, dx[c0:c1], axis=aw)

    parallel.run(block, parallel.blocks(x_shape[0], dx[0].nbytes))
    return dx


def max_pool_forward_fast(x, pool_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.max_pool_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W) -> out (N, C, H', W'), in x's dtype and memory layout; windows
    may overlap. The cache holds two uint8 index arrays (x's size / stride and the
    output's size), not x.
    """
    PH, PW, s, H_out, W_out = pool_shapes("max_pool_forward_fast", x, pool_param)
    xv, axes, to_user = pool_layout(x)
    out, idx_w, idx_h = pool_forward_blocks(xv, axes, PH, PW, s, H_out, W_out)
    return to_user(out), (xv.shape, axes, idx_w, idx_h, (PH, PW, s), x.shape[2:])


def max_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.max_pool_backward_naive`: dout -> dx (N, C, H, W).

    Like the naive layer, each output's gradient goes to the first maximum of its
    window in row-major order. Lines that disjoint windows cover are written by slice
    assignment (no zero fill); only overlapping window offsets are summed.
    """
    fn = "max_pool_backward_fast"
    xv_shape, axes, idx_w, idx_h, (PH, PW, s), _ = cache
    check_ndim(fn, "dout", dout, 4, "(N, C, H', W')")
    internal = axes == (1, 2)
    out_shape = tuple(idx_h.shape[i] for i in (3, 0, 1, 2)) if internal else idx_h.shape
    check_dout(fn, dout, out_shape)
    dv = dout.transpose(1, 2, 3, 0) if internal else dout
    dx = pool_backward_blocks(dv, idx_w, idx_h, xv_shape, axes, PH, PW, s)
    return from_internal(dx) if internal else dx


__all__ = [
    "max_pool_backward_fast",
    "max_pool_forward_fast",
    "pool_backward_blocks",
    "pool_forward_blocks",
    "pool_layout",
    "running_max",
    "scatter",
]
