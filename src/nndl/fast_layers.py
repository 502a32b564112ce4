"""Fast convolution and max pooling: BLAS matrix products plus threaded NumPy passes.

Same signatures and results as the naive layers in :mod:`nndl.conv_layers` (the tests
prove it); only the caches and the memory layout of the returned arrays differ.

**Layout.** Internally every activation is stored channels first, batch last: a
(C, H, W, N) buffer. The layers return it as an (N, C, H, W) *view*
(``buf.transpose(3, 0, 1, 2)``), so callers see the usual shape, and the next fast layer
gets its (C, H, W, N) buffer back with no copy. Why: a convolution is a GEMM
``(F, C*k*k) @ (C*k*k, H'*W'*N)`` whose output IS the (F, H', W', N) buffer (no
transposed copy between GEMMs), per-channel reductions (bias, batch norm) run over
contiguous rows, and every strided slice along H or W keeps contiguous runs of N
elements, where an (N, C, H, W) layout leaves runs of a few pixels. An input in another
layout (the data batch, a caller's dout) costs one transposing copy.

**Convolution.** ``conv_param`` keys besides ``stride`` and ``pad`` (all optional):

* ``'algorithm'``: ``'auto'`` (default), ``'im2col'``, ``'winograd2'`` or
  ``'winograd4'``. For 3x3 stride-1 filters with at least
  :data:`WINOGRAD_MIN_CHANNELS` input channels, auto uses Winograd (:mod:`nndl.winograd`,
  batched GEMMs): F(4x4,3x3) (1/4 of the multiplications) when the optional numba
  kernels are installed (``pip install nndl[fast]``), else F(2x2,3x3) (4/9), whose
  NumPy transforms are cheaper; im2col otherwise. Measured per layer (1 thread, batch
  128-256, 4x4 to 32x32 maps, 24-256 channels): F(4x4,3x3) with numba was 1.1-2.5x
  faster than im2col everywhere, F(2x2,3x3) with NumPy 1.0-1.8x.
* ``'input_grad'`` (bool, default True): False makes the backward pass skip dx and
  return ``None`` in its place: a network's first layer never needs it, and it is a
  third of that layer's backward work.
* ``'recompute'`` (bool, default False): the cache keeps x instead of the columns (or
  the Winograd-transformed input) and the backward pass rebuilds them.
* ``'col_buffer_bytes'`` (int, default :data:`COL_BUFFER_BYTES`): im2col works through
  the output rows in chunks whose column buffer holds at most this many bytes (at least
  one output row). A problem that needs more than one chunk always recomputes.

im2col copies x (C, H, W, N) into columns (C*k*k, rows*W'*N) with one strided slice
copy per channel block and kernel offset (taps in the zero padding are zero-filled; no
padded copy), then does ONE GEMM per chunk; the backward pass is two more GEMMs plus
col2im as slice-adds over the kernel offsets. The copies run on :mod:`nndl.parallel`'s
threads, one block of channels each.

**Memory** (extra, per call; ``B = max(col_buffer_bytes, one output row's columns)``):
im2col forward, one column buffer (<= B, kept in the cache when the problem is one
chunk and not ``recompute``) and the output; backward, one column-gradient buffer
(<= B, scratch). Winograd: see :mod:`nndl.winograd` (the cache keeps the transformed
input, 4x x's size for F(2x2,3x3), 2.25x for F(4x4,3x3), or x with ``recompute``).
Max pool: the cache holds two uint8 index arrays (x's size / stride and the output's
size), a scratch buffer of x's size / stride for the intermediate.

Temporaries live in per-thread scratch buffers reused from call to call
(:mod:`nndl._scratch`); :func:`free_scratch` releases them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import parallel, winograd
from ._scratch import free_scratch, scratch
from .backend import get_array_module
from .checks import check_dout, check_ndim, conv_options, conv_shapes, pool_shapes

COL_BUFFER_BYTES = 16 * 2**20
"""Default upper bound in bytes of one column buffer; see ``conv_param['col_buffer_bytes']``."""

WINOGRAD_MIN_CHANNELS = 16
"""Fewest input channels for which 'auto' picks Winograd: below it the transformed GEMMs
(inner dimension C) are too thin to beat im2col's single GEMM over C*9."""

ALGORITHMS = ("auto", "im2col", "winograd2", "winograd4")


# --- layout -----------------------------------------------------------------------------


def to_internal(x):
    """The (C, H, W, N) view of an (N, C, H, W) array, made contiguous if it is not."""
    xc = x.transpose(1, 2, 3, 0)
    return xc if xc.flags.c_contiguous else get_array_module(x).ascontiguousarray(xc)


def from_internal(a):
    """The (N, C, H, W) view of a (C, H, W, N) buffer."""
    return a.transpose(3, 0, 1, 2)


def is_internal(x) -> bool:
    """Whether the (N, C, H, W) array x is a view of a contiguous (C, H, W, N) buffer."""
    return x.transpose(1, 2, 3, 0).flags.c_contiguous


# --- convolution options ----------------------------------------------------------------


def _algorithm(fn: str, conv_param: Mapping[str, Any], w_shape, stride: int) -> str:
    algo = conv_param.get("algorithm", "auto")
    if algo not in ALGORITHMS:
        raise ValueError(f"{fn}: conv_param['algorithm'] must be one of {ALGORITHMS}, got {algo!r}")
    if algo.startswith("winograd") and not winograd.applies(w_shape, stride):
        raise ValueError(
            f"{fn}: conv_param['algorithm'] {algo!r} needs 3x3 filters and stride 1, got "
            f"filters {tuple(w_shape[2:])} and stride {stride}"
        )
    if algo == "auto":
        ok = winograd.applies(w_shape, stride) and w_shape[1] >= WINOGRAD_MIN_CHANNELS
        algo = "im2col" if not ok else "winograd4" if winograd.compiled_available() else "winograd2"
    return algo


def _input_grad(fn: str, conv_param: Mapping[str, Any]) -> bool:
    flag = conv_param.get("input_grad", True)
    if not isinstance(flag, bool) and type(flag).__name__ != "bool_":
        raise TypeError(f"{fn}: expected conv_param['input_grad'] to be a bool, got {flag!r}")
    return bool(flag)


# --- im2col -----------------------------------------------------------------------------


def _taps(size: int, kernel: int, stride: int, pad: int, start: int, stop: int):
    """Per kernel offset k, for outputs ``[start, stop)``: the outputs ``[lo, hi)`` whose
    tap lands inside the unpadded input, and the input index of output ``lo``."""
    for k in range(kernel):
        lo = min(stop, max(start, -(-(pad - k) // stride)))
        hi = max(lo, min(stop, (size - 1 + pad - k) // stride + 1))
        yield k, lo, hi, lo * stride + k - pad


def _windows(x_shape, k_shape, stride: int, pad: int, rows: tuple[int, int], W_out: int):
    """(kh, kw, out block, in block) per kernel offset for output rows ``rows``; blocks
    index the H and W axes of a (C, H, W, N) array (out rows relative to ``rows[0]``)."""
    H, W = x_shape[1:3]
    HH, WW = k_shape
    r0 = rows[0]
    for kh, i0, i1, h0 in _taps(H, HH, stride, pad, *rows):
        hs = slice(h0, h0 + stride * (i1 - i0), stride)
        for kw, j0, j1, c0 in _taps(W, WW, stride, pad, 0, W_out):
            ws = slice(c0, c0 + stride * (j1 - j0), stride)
            yield kh, kw, (i0 - r0, i1 - r0, j0, j1), (hs, ws)


def _im2col(x, cols, k_shape, stride: int, pad: int, rows: tuple[int, int], W_out: int):
    """Fill cols (C, HH, WW, r, W_out, N) from x (C, H, W, N) for output rows ``rows``."""
    wins = list(_windows(x.shape, k_shape, stride, pad, rows, W_out))
    n_rows = rows[1] - rows[0]

    def block(c0: int, c1: int) -> None:
        for kh, kw, (i0, i1, j0, j1), (hs, ws) in wins:
            dst = cols[c0:c1, kh, kw]
            dst[:, i0:i1, j0:j1] = x[c0:c1, hs, ws]
            if i0 > 0 or i1 < n_rows or j0 > 0 or j1 < W_out:
                dst[:, :i0] = 0
                dst[:, i1:] = 0
                dst[:, i0:i1, :j0] = 0
                dst[:, i0:i1, j1:] = 0

    per_c = cols[0].nbytes
    parallel.run(block, parallel.blocks(x.shape[0], per_c))


def _col2im(dcols, dx, k_shape, stride: int, pad: int, rows: tuple[int, int], W_out: int):
    """Add dcols (C, HH, WW, r, W_out, N) into dx (C, H, W, N): slice-adds per offset."""
    wins = list(_windows(dx.shape, k_shape, stride, pad, rows, W_out))

    def block(c0: int, c1: int) -> None:
        for kh, kw, (i0, i1, j0, j1), (hs, ws) in wins:
            dx[c0:c1, hs, ws] += dcols[c0:c1, kh, kw, i0:i1, j0:j1]

    parallel.run(block, parallel.blocks(dx.shape[0], dcols[0].nbytes))


def _row_chunk(H_out: int, bytes_per_row: int, budget: int) -> int:
    return max(1, min(H_out, budget // max(bytes_per_row, 1)))


def _add_bias(out, b) -> None:
    """out (F, ...) += b per row, on the pool's threads."""

    def block(f0: int, f1: int) -> None:
        out[f0:f1] += b[f0:f1].reshape((-1,) + (1,) * (out.ndim - 1))

    parallel.run(block, parallel.blocks(out.shape[0], out[0].nbytes))


def _sum_rows(a, out) -> None:
    """out[f] = sum of a[f] (F, ...), on the pool's threads (one row per reduction)."""

    def block(f0: int, f1: int) -> None:
        out[f0:f1] = a[f0:f1].reshape(f1 - f0, -1).sum(axis=1)

    parallel.run(block, parallel.blocks(a.shape[0], a[0].nbytes))


def _im2col_forward(xc, w, b, stride, pad, H_out, W_out, recompute, budget):
    xp = get_array_module(xc)
    C, H, W, N = xc.shape
    F, _, HH, WW = w.shape
    K = C * HH * WW
    w2 = w.reshape(F, K).astype(xc.dtype, copy=False)
    rows = _row_chunk(H_out, K * W_out * N * xc.dtype.itemsize, budget)
    keep = H_out > 0 and not recompute and rows >= H_out
    out = xp.empty((F, H_out, W_out, N), dtype=xc.dtype)
    cols = None
    for r0 in range(0, H_out, rows):
        r1 = min(H_out, r0 + rows)
        shape = (C, HH, WW, r1 - r0, W_out, N)
        cols = xp.empty(shape, xc.dtype) if keep else scratch(xp, "cols", shape, xc.dtype)
        _im2col(xc, cols, (HH, WW), stride, pad, (r0, r1), W_out)
        xp.matmul(w2, cols.reshape(K, -1), out=out[:, r0:r1].reshape(F, -1))
    _add_bias(out, b.astype(xc.dtype, copy=False))
    return out, ("im2col", w, cols if keep else None, None if keep else xc, rows)


def _im2col_backward(dc, cache, geometry, need_dx):
    _, w, cols, xc, rows = cache
    (C, H, W, N), stride, pad, H_out, W_out = geometry
    xp = get_array_module(dc)
    F, _, HH, WW = w.shape
    K = C * HH * WW
    w2 = w.reshape(F, K).astype(dc.dtype, copy=False)
    dx = xp.zeros((C, H, W, N), dtype=dc.dtype) if need_dx else None
    dw2 = xp.zeros((F, K), dtype=dc.dtype)
    for r0 in range(0, H_out, rows):
        r1 = min(H_out, r0 + rows)
        shape = (C, HH, WW, r1 - r0, W_out, N)
        c = cols
        if c is None:  # rebuilt columns are scratch: ours to overwrite below
            c = scratch(xp, "cols", shape, dc.dtype)
            _im2col(xc.astype(dc.dtype, copy=False), c, (HH, WW), stride, pad, (r0, r1), W_out)
        d2 = dc[:, r0:r1].reshape(F, -1)
        dw2 += d2 @ c.reshape(K, -1).T
        if need_dx:
            dcols = c if cols is None else scratch(xp, "dcols", shape, dc.dtype)
            xp.matmul(w2.T, d2, out=dcols.reshape(K, -1))
            _col2im(dcols, dx, (HH, WW), stride, pad, (r0, r1), W_out)
    return dx, dw2.reshape(w.shape)


# --- convolution ------------------------------------------------------------------------


def conv_forward_fast(x, w, b, conv_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.conv_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W'), in x's dtype,
    a view of a (F, H', W', N) buffer (see the module docstring). ``conv_param`` takes
    ``stride`` and ``pad`` and, optionally, ``algorithm``, ``input_grad``, ``recompute``
    and ``col_buffer_bytes`` (module docstring).
    """
    fn = "conv_forward_fast"
    stride, pad, H_out, W_out = conv_shapes(fn, x, w, b, conv_param)
    recompute, budget = conv_options(fn, conv_param, COL_BUFFER_BYTES)
    algo = _algorithm(fn, conv_param, w.shape, stride)
    need_dx = _input_grad(fn, conv_param)
    xc = to_internal(x)
    geometry = (xc.shape, stride, pad, H_out, W_out)
    if algo == "im2col" or x.shape[0] == 0:
        out, inner = _im2col_forward(xc, w, b, stride, pad, H_out, W_out, recompute, budget)
    else:
        m = int(algo[-1])
        out, wcache = winograd.winograd_forward(xc, w, b, pad, m, recompute)
        inner = ("winograd", wcache)
    return from_internal(out), (inner, geometry, need_dx, w.shape)


def conv_backward_fast(dout, cache, input_grad: bool = True):
    """Fast :func:`nndl.conv_layers.conv_backward_naive`: dout (N, F, H', W') -> dx, dw, db.

    dx (N, C, H, W) (a view of a (C, H, W, N) buffer; ``None`` when the forward's
    ``conv_param['input_grad']`` or ``input_grad`` here is False), dw (F, C, HH, WW), db (F,).
    """
    fn = "conv_backward_fast"
    inner, geometry, need_dx, w_shape = cache
    need_dx = need_dx and bool(input_grad)
    check_ndim(fn, "dout", dout, 4, "(N, F, H', W')")
    (C, H, W, N), _, _, H_out, W_out = geometry
    check_dout(fn, dout, (N, w_shape[0], H_out, W_out))
    xp = get_array_module(dout)
    dc = to_internal(dout)
    if inner[0] == "winograd":
        dx, dw, db = winograd.winograd_backward(dc, inner[1], need_dx)
    else:
        dx, dw = _im2col_backward(dc, inner, geometry, need_dx)
        db = xp.empty(w_shape[0], dtype=dout.dtype)
        _sum_rows(dc, db)
    return (None if dx is None else from_internal(dx)), dw, db


# --- convolution then max pool -----------------------------------------------------------


def _conv_pool_fused(x, w, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]) -> bool:
    """Whether conv_pool_forward_fast runs fused: a compiled F(4x4,3x3) conv and a 2x2
    stride-2 pool (the shapes are checked by the caller)."""
    stride = conv_param.get("stride")
    if stride != 1 or tuple(w.shape[2:]) != (3, 3):
        return False
    if _algorithm("conv_pool_forward_fast", conv_param, w.shape, 1) != "winograd4":
        return False
    p = (pool_param.get("pool_height"), pool_param.get("pool_width"), pool_param.get("stride"))
    return p == (2, 2, 2) and winograd.pool_fusable(x) and x.shape[0] > 0


def conv_pool_forward_fast(x, w, b, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]):
    """:func:`conv_forward_fast` then :func:`max_pool_forward_fast` (same results as the
    naive layers composed): x (N, C, H, W) -> out (N, F, H'', W'').

    With the compiled kernels, a 3x3 stride-1 Winograd F(4x4,3x3) conv and a 2x2 stride-2
    pool (floor mode allowed) run fused: each 4x4 output tile is pooled as it is made, so
    the conv output (4x the pooled size) is never stored, and the backward pass routes
    the pooled gradient into the tiles directly. Otherwise the two layers run in turn.
    """
    fn = "conv_pool_forward_fast"
    stride, pad, H_out, W_out = conv_shapes(fn, x, w, b, conv_param)
    pool_shapes(fn, np.broadcast_to(np.zeros((), x.dtype), (1, 1, H_out, W_out)), pool_param)
    if not _conv_pool_fused(x, w, conv_param, pool_param):
        a, conv_cache = conv_forward_fast(x, w, b, conv_param)
        out, pool_cache = max_pool_forward_fast(a, pool_param)
        return out, ("composed", conv_cache, pool_cache)
    recompute, _ = conv_options(fn, conv_param, COL_BUFFER_BYTES)
    need_dx = _input_grad(fn, conv_param)
    pooled, ix, wcache = winograd.winograd_pool_forward(to_internal(x), w, b, pad, recompute)
    return from_internal(pooled), ("fused", wcache, ix, need_dx)


def conv_pool_backward_fast(dout, cache, input_grad: bool = True):
    """Gradients of :func:`conv_pool_forward_fast`: dout (N, F, H'', W'') -> dx (or None,
    as :func:`conv_backward_fast`), dw, db."""
    fn = "conv_pool_backward_fast"
    if cache[0] == "composed":
        _, conv_cache, pool_cache = cache
        da = max_pool_backward_fast(dout, pool_cache)
        return conv_backward_fast(da, conv_cache, input_grad)
    _, wcache, ix, need_dx = cache
    check_ndim(fn, "dout", dout, 4, "(N, F, H'', W'')")
    check_dout(fn, dout, tuple(ix.shape[i] for i in (3, 0, 1, 2)))
    dx, dw, db = winograd.winograd_pool_backward(
        to_internal(dout), ix, wcache, need_dx and bool(input_grad)
    )
    return (None if dx is None else from_internal(dx)), dw, db


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


def _running_max(views, out, idx) -> None:
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


def _scatter(d, idx, K: int, stride: int, n_out: int, dst, axis: int) -> None:
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


def _pool_layout(x):
    """(view, axes, to_user): x as (C, H, W, N) when stored so, else as (N, C, H, W)."""
    if x.ndim == 4 and is_internal(x) and not x.flags.c_contiguous:
        return x.transpose(1, 2, 3, 0), (1, 2), from_internal
    return x, (2, 3), lambda a: a


def _pool_forward_blocks(xv, axes, PH, PW, s, H_out, W_out):
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
        _running_max(cols, a, idx_w[c0:c1])
        rows = [_along(a, ah, slice(i, i + s * H_out, s)) for i in range(PH)]
        _running_max(rows, out[c0:c1], idx_h[c0:c1])

    parallel.run(block, parallel.blocks(xv.shape[0], xv[0].nbytes))
    return out, idx_w, idx_h


def _pool_backward_blocks(dv, idx_w, idx_h, x_shape, axes, PH, PW, s):
    """dx in the forward's axis order from dv (the output's gradient, same order)."""
    xp = get_array_module(dv)
    ah, aw = axes
    H_out, W_out = idx_h.shape[ah], idx_h.shape[aw]
    dx = xp.empty(x_shape, dtype=dv.dtype)

    def block(c0: int, c1: int) -> None:
        da = scratch(xp, "pool_rows", (c1 - c0, *idx_w.shape[1:]), dv.dtype)
        _scatter(dv[c0:c1], idx_h[c0:c1], PH, s, H_out, da, axis=ah)
        _scatter(da, idx_w[c0:c1], PW, s, W_out, dx[c0:c1], axis=aw)

    parallel.run(block, parallel.blocks(x_shape[0], dx[0].nbytes))
    return dx


def max_pool_forward_fast(x, pool_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.max_pool_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W) -> out (N, C, H', W'), in x's dtype and memory layout; windows
    may overlap. The cache holds two uint8 index arrays (x's size / stride and the
    output's size), not x.
    """
    PH, PW, s, H_out, W_out = pool_shapes("max_pool_forward_fast", x, pool_param)
    xv, axes, to_user = _pool_layout(x)
    out, idx_w, idx_h = _pool_forward_blocks(xv, axes, PH, PW, s, H_out, W_out)
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
    dx = _pool_backward_blocks(dv, idx_w, idx_h, xv_shape, axes, PH, PW, s)
    return from_internal(dx) if internal else dx


__all__ = [
    "ALGORITHMS",
    "COL_BUFFER_BYTES",
    "WINOGRAD_MIN_CHANNELS",
    "conv_backward_fast",
    "conv_forward_fast",
    "conv_pool_backward_fast",
    "conv_pool_forward_fast",
    "free_scratch",
    "from_internal",
    "is_internal",
    "max_pool_backward_fast",
    "max_pool_forward_fast",
    "to_internal",
]
