"""The compiled Winograd F(4x4,3x3) layer, in chunks of tiles (numba kernels of
:mod:`nndl.kernels.numba_winograd`; :mod:`nndl.kernels.winograd` dispatches here).

What it computes: the same forward and backward passes as the NumPy path of
:mod:`nndl.kernels.winograd` for m = 4 (the tests compare the two), and, with ``pool``, a 2x2
stride-2 max pool (floor mode) inside the output transform and its gradient routed
back into the tiles.

Why it is fast: each transform is one compiled pass that reads a tile once and writes
it once (instead of one NumPy pass per term), and the layer goes through its tiles in
chunks of about :data:`CHUNK_BYTES` of transformed data: transform, the 36 GEMMs
(:func:`nndl.kernels.parallel.matmul`), transform back, chunk by chunk, so the products stay in
cache-sized buffers and never exist in full. With the pool, the full-size conv output
is never written.

Memory: the cache keeps the transformed input V (2.25x x's size) unless ``recompute``;
per chunk (scratch, about :data:`CHUNK_BYTES` each): V (with ``recompute``), the products
M, or backward dM, dU and dV; backward also the padded input's gradient (scratch).
"""

from __future__ import annotations

import numpy as np

from . import parallel
from .scratch import scratch
from .winograd_transforms import Geometry, filter_grad, filter_transform

run = parallel.run_compiled

CHUNK_BYTES = 32 * 2**20
"""Target bytes of one chunk's transformed arrays on the compiled F(4x4,3x3) path: a layer's
tiles go through the transforms and GEMMs a chunk at a time, so the products M, dM and dV
(scratch) stay about this size instead of 2.25x the layer's largest activation."""


def tile_chunks(g: Geometry, itemsize: int) -> list[tuple[int, int]]:
    """Tile ranges ``[k0, k1)`` of about :data:`CHUNK_BYTES` of transformed data each."""
    per = max(1, CHUNK_BYTES // (36 * max(g.F, g.C) * g.N * itemsize))
    n = g.TY * g.TX
    return [(k0, min(n, k0 + per)) for k0 in range(0, n, per)]


def forward4(k, x, w, b, g: Geometry, recompute: bool, pool: bool = False):
    """The compiled F(4x4,3x3) forward pass; with ``pool``, a 2x2 stride-2 max pool in
    the output transform: returns ``(pooled, ix)`` in place of the output."""
    U = filter_transform(w, g.t)
    N = g.N
    V = None
    if not recompute:  # the cache: all tiles at once
        V = np.empty((36, g.C, g.tiles), x.dtype)
        run(k.input_transform4, g.C, x, V, g.pad, g.TY, g.TX, 0, g.TY * g.TX)
    if pool:
        shape = (g.F, (g.Ho - 2) // 2 + 1, (g.Wo - 2) // 2 + 1, N)
        out = (np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.uint8))
    else:
        out = np.empty((g.F, g.Ho, g.Wo, N), dtype=x.dtype)
    for k0, k1 in tile_chunks(g, x.dtype.itemsize):
        cols = (k1 - k0) * N
        if V is None:
            Vc = scratch(np, "wino_V", (36, g.C, cols), x.dtype)
            run(k.input_transform4, g.C, x, Vc, g.pad, g.TY, g.TX, k0, k1)
        else:
            Vc = V[:, :, k0 * N : k1 * N]
        Mc = parallel.matmul(U, Vc, scratch(np, "wino_M", (36, g.F, cols), x.dtype))
        if pool:
            run(k.output_transform4_pool2, g.F, Mc, b, g.TY, g.TX, k0, k1, *out)
        else:
            run(k.output_transform4, g.F, Mc, out, b, g.TY, g.TX, k0, k1)
    return out, (g, U, x if recompute else None, V)


def backward4(k, dout, cache, need_dx: bool, ix=None):
    """The compiled F(4x4,3x3) backward pass; with the pool's ``ix``, dout is the pooled
    output's gradient."""
    g, U, x, V = cache
    dtype, N = dout.dtype, g.N
    U = U.astype(dtype, copy=False)
    Ut = U.transpose(0, 2, 1)
    db = np.empty(g.F, dtype=dtype)
    run(k.channel_sums, g.F, dout, db)  # pooled: each gradient goes to one conv output
    dU = np.zeros((36, g.F, g.C), dtype=dtype)
    Hp, Wp = g.padded
    if need_dx:
        dxp = scratch(np, "wino_dxp", (g.C, Hp, Wp, N), dtype)  # input_grad4 fills it all
    for k0, k1 in tile_chunks(g, dtype.itemsize):
        cols = (k1 - k0) * N
        dMc = scratch(np, "wino_dM", (36, g.F, cols), dtype)
        if ix is None:
            run(k.dout_transform4, g.F, dout, dMc, g.TY, g.TX, k0, k1)
        else:
            run(k.dout_transform4_pool2, g.F, dout, ix, dMc, g.TY, g.TX, k0, k1)
        if V is None:
            Vc = scratch(np, "wino_V", (36, g.C, cols), dtype)
            xd = x.astype(dtype, copy=False)
            run(k.input_transform4, g.C, xd, Vc, g.pad, g.TY, g.TX, k0, k1)
        else:
            Vc = V[:, :, k0 * N : k1 * N].astype(dtype, copy=False)
        parallel.matmul_add(dMc, Vc.transpose(0, 2, 1), dU, scratch(np, "wino_dU", dU.shape, dtype))
        if need_dx:
            dVc = parallel.matmul(Ut, dMc, scratch(np, "wino_dV", (36, g.C, cols), dtype))
            run(k.input_grad4, g.C, dVc, dxp, g.TY, g.TX, k0, k1)
    dx = None
    if need_dx:
        dx = np.empty((g.C, g.H, g.W, N), dtype=dtype)
        run(k.crop4, g.C, dxp, g.pad, dx)
    return dx, filter_grad(dU, g, dtype), db


__all__ = ["CHUNK_BYTES", "backward4", "forward4", "tile_chunks"]
