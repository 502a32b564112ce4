"""im2col convolution for :mod:`nndl.fast_layers`: strided slice copies and one GEMM per chunk.

What it computes: the convolution of x (C, H, W, N) with w (F, C, HH, WW) plus b, any
stride and zero padding, into a (F, H', W', N) buffer, and its gradients.

Why it is fast: x is copied into columns (C*k*k, rows*W'*N) with one strided slice copy
per channel block and kernel offset (taps in the zero padding are zero-filled; no padded
copy), then ONE GEMM per chunk of output rows writes the (F, H', W', N) output directly;
the backward pass is two more GEMMs plus col2im as slice-adds over the kernel offsets.
The copies run on :mod:`nndl.kernels.parallel`'s threads, one block of channels each.

Memory (extra, per call; ``B = max(budget, one output row's columns)``): forward, one
column buffer (<= B, kept in the cache when the problem is one chunk and not
``recompute``, else a per-thread scratch buffer) and the output; backward, one
column-gradient buffer (<= B, scratch).
"""

from __future__ import annotations

from ..backend import get_array_module
from . import parallel
from .scratch import scratch


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


def sum_rows(a, out) -> None:
    """out[f] = sum of a[f] (F, ...), on the pool's threads (one row per reduction)."""

    def block(f0: int, f1: int) -> None:
        out[f0:f1] = a[f0:f1].reshape(f1 - f0, -1).sum(axis=1)

    parallel.run(block, parallel.blocks(a.shape[0], a[0].nbytes))


def im2col_forward(xc, w, b, stride, pad, H_out, W_out, recompute, budget):
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


def im2col_backward(dc, cache, geometry, need_dx):
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


__all__ = ["im2col_backward", "im2col_forward", "sum_rows"]
