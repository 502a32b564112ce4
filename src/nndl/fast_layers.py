"""Fast convolution and max pooling in pure NumPy: strided windows plus one BLAS matmul.

Same signatures and results as the naive layers in :mod:`nndl.conv_layers` (the tests
prove it); only the caches differ. No compiler or build step is involved.

Convolution works in a channels-first layout: x (N, C, H, W) is copied once into a
column matrix ``cols`` of shape ``(C*HH*WW, N*H'*W')`` (one strided slice copy per kernel
offset, straight from x; taps in the zero padding are zero-filled, no padded copy is
made), so a chunk of the batch is ONE large GEMM ``w.reshape(F, -1) @ cols`` instead of
N small ones. The backward pass is two more large GEMMs plus col2im as slice-adds over
the kernel offsets (never ``np.add.at``).

Memory (``conv_param`` keys besides ``stride`` and ``pad``, both optional):

* ``'col_buffer_bytes'`` (int, default :data:`COL_BUFFER_BYTES` = 16 MiB): the batch goes
  through in chunks over N so that one column buffer holds at most this many bytes (but
  always at least one sample's columns, ``C*HH*WW * H'*W' * itemsize``). The default is
  also the fast choice: a chunk this size stays warm in a reused buffer and largely in
  the CPU's cache, where one batch-sized buffer is fresh memory (page faults) each call.
* ``'recompute'`` (bool, default False): the cache keeps ``x`` instead of the columns
  and the backward pass rebuilds them chunk by chunk. A batch that needs more than one
  chunk always recomputes, since caching every chunk's columns would break the bound.

So a cache holds at most one column buffer, and with ``B = max(col_buffer_bytes, one
sample's columns)`` the extra memory of a call is at most: forward, one column buffer
(<= B) plus the chunk's GEMM output (``F*n*H'*W'`` elements); backward, the chunk's
transposed ``dout`` (the same size) plus one column-gradient buffer (<= B; a rebuilt
column buffer is overwritten with the column gradients, so recomputation adds nothing).

Temporaries (the GEMM output, the transposed ``dout``, column buffers that are not
cached, pooling's intermediates) live in per-thread scratch buffers that are reused from
call to call: a fresh multi-megabyte array costs a page fault per 4 KiB on first touch,
which doubled the time of a small convolution. The scratch keeps the largest size each
temporary reached (so within the bound above); :func:`free_scratch` releases it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

from .backend import get_array_module
from .checks import check_dout, check_ndim, conv_options, conv_shapes, pool_shapes

COL_BUFFER_BYTES = 16 * 2**20
"""Default upper bound in bytes of one column buffer; see ``conv_param['col_buffer_bytes']``."""


_local = threading.local()


def _scratch(xp, slot: str, shape: tuple[int, ...], dtype):
    """A reusable per-thread buffer of ``shape`` for one temporary (never cached/returned)."""
    store = getattr(_local, "buffers", None)
    if store is None:
        store = _local.buffers = {}
    key = (slot, xp.__name__, xp.dtype(dtype).str)
    size = math.prod(shape)
    buf = store.get(key)
    if buf is None or buf.size < size:
        buf = store[key] = xp.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def free_scratch() -> None:
    """Release this thread's scratch buffers (they are re-created on the next call)."""
    _local.buffers = {}


# --- convolution ------------------------------------------------------------------------


def _taps(size: int, kernel: int, stride: int, pad: int, n_out: int):
    """Per kernel offset k: the outputs ``[lo, hi)`` whose tap lands inside the unpadded
    input, and the input index of output ``lo`` (taps in the zero padding are skipped)."""
    for k in range(kernel):
        lo = min(n_out, max(0, -(-(pad - k) // stride)))
        hi = max(lo, min(n_out, (size - 1 + pad - k) // stride + 1))
        yield k, lo, hi, lo * stride + k - pad


def _windows(x_shape, w_shape, stride: int, pad: int, H_out: int, W_out: int):
    """(kh, kw, output block, input block) per kernel offset; blocks index (C, n, ., .)."""
    H, W = x_shape[2:]
    HH, WW = w_shape[2:]
    for kh, i0, i1, r0 in _taps(H, HH, stride, pad, H_out):
        rows = slice(r0, r0 + stride * (i1 - i0), stride)
        for kw, j0, j1, c0 in _taps(W, WW, stride, pad, W_out):
            cols = slice(c0, c0 + stride * (j1 - j0), stride)
            yield kh, kw, (i0, i1, j0, j1), (Ellipsis, rows, cols)


def _im2col(x, w_shape, stride: int, pad: int, H_out: int, W_out: int, scratch: bool):
    """Columns (C*HH*WW, n*H_out*W_out) of x (n, C, H, W), row order (c, kh, kw).

    Read straight from x (no padded copy); taps that fall in the padding are zeroed. With
    ``scratch`` the columns go into the reusable buffer (they must not be cached then).
    """
    xp = get_array_module(x)
    n, C = x.shape[:2]
    HH, WW = w_shape[2:]
    xt = x.transpose(1, 0, 2, 3)
    shape = (C, HH, WW, n, H_out, W_out)
    cols = _scratch(xp, "cols", shape, x.dtype) if scratch else xp.empty(shape, dtype=x.dtype)
    for kh, kw, (i0, i1, j0, j1), src in _windows(x.shape, w_shape, stride, pad, H_out, W_out):
        block = cols[:, kh, kw]
        block[:, :, i0:i1, j0:j1] = xt[src]
        if i0 > 0 or i1 < H_out or j0 > 0 or j1 < W_out:
            block[:, :, :i0] = 0
            block[:, :, i1:] = 0
            block[:, :, i0:i1, :j0] = 0
            block[:, :, i0:i1, j1:] = 0
    return cols.reshape(C * HH * WW, n * H_out * W_out)


def _col2im(dcols, dx, w_shape, stride: int, pad: int, H_out: int, W_out: int):
    """Add column gradients (C*HH*WW, n*H_out*W_out) into the zeroed dx (n, C, H, W).

    Slice-adds over the kernel offsets; taps in the padding are simply not added.
    """
    n, C = dx.shape[:2]
    HH, WW = w_shape[2:]
    dxt = dx.transpose(1, 0, 2, 3)
    d6 = dcols.reshape(C, HH, WW, n, H_out, W_out)
    for kh, kw, (i0, i1, j0, j1), dst in _windows(dx.shape, w_shape, stride, pad, H_out, W_out):
        dxt[dst] += d6[:, kh, kw, :, i0:i1, j0:j1]


def _chunk_size(N: int, col_bytes_per_sample: int, budget: int) -> int:
    return max(1, min(N, budget // max(col_bytes_per_sample, 1)))


def conv_forward_fast(x, w, b, conv_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.conv_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W'), in x's dtype.
    ``conv_param`` takes ``stride`` and ``pad`` and, optionally, ``recompute`` and
    ``col_buffer_bytes`` (see the module docstring): the column buffer never exceeds
    ``max(col_buffer_bytes, C*HH*WW*H'*W'*itemsize)`` bytes; the cache holds at most one.
    """
    fn = "conv_forward_fast"
    stride, pad, H_out, W_out = conv_shapes(fn, x, w, b, conv_param)
    recompute, budget = conv_options(fn, conv_param, COL_BUFFER_BYTES)
    xp = get_array_module(x)
    N = x.shape[0]
    F, _, HH, WW = w.shape
    P = H_out * W_out
    w2 = w.reshape(F, -1).astype(x.dtype, copy=False)
    bias = b.astype(x.dtype, copy=False).reshape(1, F, 1)
    chunk = _chunk_size(N, w2.shape[1] * P * x.dtype.itemsize, budget)
    out = xp.empty((N, F, H_out, W_out), dtype=x.dtype)
    keep_cols = N > 0 and not recompute and chunk >= N
    cols = None
    for n0 in range(0, N, chunk):
        xc = x[n0 : n0 + chunk]
        n = xc.shape[0]
        cols = _im2col(xc, w.shape, stride, pad, H_out, W_out, scratch=not keep_cols)
        o2 = xp.matmul(w2, cols, out=_scratch(xp, "gemm", (F, n * P), x.dtype))
        # (F, n*P) -> (n, F, P) while adding the bias: one pass over the output.
        xp.add(o2.reshape(F, n, P).transpose(1, 0, 2), bias, out=out[n0 : n0 + n].reshape(n, F, P))
    cache = (
        x.shape,
        w,
        cols if keep_cols else None,
        None if keep_cols else x,
        (stride, pad, H_out, W_out, chunk),
    )
    return out, cache


def conv_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.conv_backward_naive`: dout (N, F, H', W') -> dx, dw, db.

    dx (N, C, H, W), dw (F, C, HH, WW), db (F,). With a recomputing cache the columns are
    rebuilt per chunk and their buffer is reused for the column gradients, so the extra
    memory stays at one column buffer.
    """
    fn = "conv_backward_fast"
    x_shape, w, cols, x, (stride, pad, H_out, W_out, chunk) = cache
    check_ndim(fn, "dout", dout, 4, "(N, F, H', W')")
    N, C, H, W = x_shape
    F, _, HH, WW = w.shape
    check_dout(fn, dout, (N, F, H_out, W_out))
    xp = get_array_module(dout)
    dtype = dout.dtype
    P = H_out * W_out
    w2 = w.reshape(F, -1).astype(dtype, copy=False)
    dx = xp.zeros(x_shape, dtype=dtype)
    dw2 = None
    for n0 in range(0, N, chunk):
        n = min(chunk, N - n0)
        d2 = _scratch(xp, "dout", (F, n, H_out, W_out), dtype)
        d2[...] = dout[n0 : n0 + n].transpose(1, 0, 2, 3)
        d2 = d2.reshape(F, n * P)
        own = cols is None
        c = _im2col(x[n0 : n0 + n], w.shape, stride, pad, H_out, W_out, True) if own else cols
        if dw2 is None:
            dw2 = d2 @ c.T
        else:
            dw2 += d2 @ c.T
        # A rebuilt column buffer is ours to overwrite; a cached one must survive.
        dcols = c if own else _scratch(xp, "dcols", c.shape, dtype)
        xp.matmul(w2.T, d2, out=dcols)
        _col2im(dcols, dx[n0 : n0 + n], w.shape, stride, pad, H_out, W_out)
    if dw2 is None:  # an empty batch
        dw2 = xp.zeros(w2.shape, dtype=dtype)
    db = dout.sum(axis=(0, 2, 3))
    return dx, dw2.reshape(w.shape), db


# --- max pooling ------------------------------------------------------------------------
# Separable: a max over the window's columns (x (N,C,H,W) -> a (N,C,H,W')), then over its
# rows (a -> out (N,C,H',W')), each a running np.maximum of strided slices. A uint8 index
# per stage records which slice won; strict '>' keeps the first maximum, so the winner is
# the first maximum of the window in row-major order, exactly the naive layer's argmax.


def _running_max(views, out):
    """Write the elementwise max of equally shaped arrays into ``out``; return the index
    (uint8) of the first array that holds it."""
    xp = get_array_module(out)
    xp.copyto(out, views[0])
    idx = xp.zeros(out.shape, dtype=xp.uint8)
    gt = _scratch(xp, "pool_gt", out.shape, xp.uint8)
    for k, v in enumerate(views[1:], start=1):
        xp.greater(v, out, out=gt.view(bool))
        xp.maximum(out, v, out=out)
        # k exceeds every earlier index, so max(idx, k * gt) sets idx = k exactly where
        # v won; far cheaper than a masked copyto.
        gt *= xp.uint8(k)
        xp.maximum(idx, gt, out=idx)
    return idx


def _scatter(d, idx, K: int, stride: int, n_out: int, dst, axis: int) -> None:
    """Route d into the uninitialised dst: dst[.., k + stride*i, ..] (+)= d * (idx == k).

    The first ``min(K, stride)`` offsets hit disjoint lines that together cover
    ``[0, stride * n_out)``, so they are written by assignment; only the lines past that
    are zeroed first, and offsets ``k >= stride`` (overlapping windows) are added.
    """
    xp = get_array_module(d)
    lead = (slice(None),) * axis
    if K < stride:
        dst[...] = 0  # lines between windows get no gradient
    else:
        dst[lead + (slice(stride * n_out, None),)] = 0
    mask = _scratch(xp, "pool_mask", d.shape, bool)
    for k in range(K):
        target = dst[lead + (slice(k, k + stride * n_out, stride),)]
        xp.equal(idx, k, out=mask)
        if k < stride:
            xp.multiply(d, mask, out=target)
        else:
            tmp = _scratch(xp, "pool_tmp", d.shape, d.dtype)
            xp.multiply(d, mask, out=tmp)
            target += tmp


def max_pool_forward_fast(x, pool_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.max_pool_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W) -> out (N, C, H', W'), in x's dtype; windows may overlap. The
    cache holds two uint8 index arrays (N, C, H, W') and (N, C, H', W'), not x.
    """
    PH, PW, s, H_out, W_out = pool_shapes("max_pool_forward_fast", x, pool_param)
    xp = get_array_module(x)
    N, C, H, _ = x.shape
    a = _scratch(xp, "pool_rows", (N, C, H, W_out), x.dtype)
    idx_w = _running_max([x[:, :, :, j : j + s * W_out : s] for j in range(PW)], a)
    out = xp.empty((N, C, H_out, W_out), dtype=x.dtype)
    idx_h = _running_max([a[:, :, i : i + s * H_out : s] for i in range(PH)], out)
    return out, (x.shape, idx_w, idx_h, (PH, PW, s))


def max_pool_backward_fast(dout, cache):
    """Fast :func:`nndl.conv_layers.max_pool_backward_naive`: dout -> dx (N, C, H, W).

    Like the naive layer, each output's gradient goes to the first maximum of its
    window in row-major order. Lines that disjoint windows cover are written by slice
    assignment (no zero fill); only overlapping window offsets are summed.
    """
    fn = "max_pool_backward_fast"
    x_shape, idx_w, idx_h, (PH, PW, s) = cache
    check_ndim(fn, "dout", dout, 4, "(N, C, H', W')")
    check_dout(fn, dout, idx_h.shape)
    xp = get_array_module(dout)
    H_out, W_out = idx_h.shape[2:]
    da = _scratch(xp, "pool_rows", idx_w.shape, dout.dtype)
    _scatter(dout, idx_h, PH, s, H_out, da, axis=2)
    dx = xp.empty(x_shape, dtype=dout.dtype)
    _scatter(da, idx_w, PW, s, W_out, dx, axis=3)
    return dx


__all__ = [
    "COL_BUFFER_BYTES",
    "free_scratch",
    "conv_forward_fast",
    "conv_backward_fast",
    "max_pool_forward_fast",
    "max_pool_backward_fast",
]
