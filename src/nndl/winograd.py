"""Winograd convolution F(m x m, 3 x 3) for 3x3 stride-1 convolutions, as batched GEMMs.

What it computes: the same cross-correlation as :func:`nndl.conv_layers.conv_forward_naive`
for a 3x3 kernel, stride 1 and any zero padding, and its exact gradients (the backward
pass is the adjoint of the forward's linear maps, so it is the gradient of what the
forward computed, and equals the direct convolution's gradient up to rounding).

Why it is fast (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
the output is cut into m x m tiles; each tile needs an (m+2) x (m+2) input tile d and
equals ``A^T [(G g G^T) * (B^T d B)] A`` for a filter g, where ``*`` is element-wise. For
a layer that means: transform every input tile (``V = B^T d B``), transform every filter
(``U = G g G^T``), then for each of the ``(m+2)^2`` transformed positions xi ONE matrix
product ``M[xi] = U[xi] (F x C) @ V[xi] (C x tiles)``, and transform back. The products
do ``(m+2)^2 / (9 m^2)`` of the direct convolution's multiplications: 4/9 for m = 2
(F(2x2,3x3)), 1/4 for m = 4 (F(4x4,3x3)). The transforms are additions of strided slices
over blocks of channels, run on :mod:`nndl.parallel`'s threads; the products are BLAS.
The backward pass is three more batched GEMMs' worth of the same shape
(``dU = dM @ V^T``, ``dV = U^T @ dM``) around the transposed transforms.

Layout: channels first, batch last. Inputs and outputs are (C, H, W, N) arrays: a GEMM
over (channels x pixels) reads and writes them without a transposed copy, and every
strided slice along H or W keeps whole contiguous runs of N (NumPy's loops stay long
where an (N, C, H, W) layout would leave runs of a few pixels).

Compiled path: with numba installed (the optional ``fast`` extra), F(4x4,3x3) runs on
compiled kernels (:mod:`nndl._numba_kernels`) that do each transform tile by tile in one
pass (several times faster than the NumPy transforms here, which stay the reference: the
tests compare the two, and the fallback; F(2x2,3x3) always uses them). The layer goes
through its tiles in chunks of about :data:`CHUNK_BYTES` of transformed data: transform,
the 36 GEMMs, transform back, chunk by chunk, so the products never exist in full.
:func:`winograd_pool_forward` also runs a 2x2 stride-2 max pool inside the output
transform. ``NNDL_NUMBA=0`` forces NumPy.

Accuracy: exact in real arithmetic. In float64 it matches the direct convolution to
about 1e-14 (tests: 1e-10). In float32, F(2x2,3x3) adds about one rounding of the
transform's small sums (relative error ~1e-6 against float64); F(4x4,3x3) has larger
transform constants and is ~10x less accurate (tests state both bounds).

Memory, per layer with T = N * ceil(H'/m) * ceil(W'/m) tiles and a = m + 2:

* forward: the cache keeps ``V`` (a^2 * C * T elements: 4x the input for m = 2,
  2.25x for m = 4) unless ``recompute``, then it keeps a reference to x and ``V`` is a
  reusable scratch buffer; plus the products ``M`` (a^2 * F * T, scratch; on the
  compiled path one chunk's worth, about :data:`CHUNK_BYTES`) and the output.
* backward: ``dM`` (a^2 * F * T) and, for dx, ``dV`` (a^2 * C * T), both scratch (one
  chunk's worth on the compiled path, plus a zero-padded dx buffer).
* NumPy path, per block of channels (one per thread): a padded input block, the
  row-transform block and a temporary of the same size, each about
  :data:`nndl.parallel.BLOCK_BYTES`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import parallel
from ._scratch import scratch
from .backend import get_array_module


class WinogradTransform(NamedTuple):
    """The matrices of F(m x m, 3 x 3): ``B^T`` (a x a), ``G`` (a x 3), ``A^T`` (m x a)."""

    m: int
    BT: np.ndarray
    G: np.ndarray
    AT: np.ndarray

    @property
    def alpha(self) -> int:
        return self.m + 2


# Interpolation points 0, 1, -1 and infinity (Lavin & Gray's F(2,3)).
F2 = WinogradTransform(
    2,
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float),
)
# Points 0, 1, -1, 2, -2 and infinity (Lavin & Gray's F(4,3)).
F4 = WinogradTransform(
    4,
    np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        dtype=float,
    ),
    np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    ),
    np.array(
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        dtype=float,
    ),
)
TRANSFORMS = {2: F2, 4: F4}
"""The supported tile sizes m and their transforms."""


def applies(w_shape, stride: int) -> bool:
    """Whether a convolution with filters of ``w_shape`` and ``stride`` can use Winograd."""
    return tuple(w_shape[2:]) == (3, 3) and stride == 1


# --- optional compiled kernels ---------------------------------------------------------


def compiled_available() -> bool:
    """Whether the numba kernels can be used (installed and not disabled)."""
    return compiled_kernels(np.empty(0, np.float32)) is not None


def compiled_kernels(a):
    """The numba kernels (:mod:`nndl._numba_kernels`) for the NumPy array a, or None when
    numba is missing, ``NNDL_NUMBA=0`` is set, or a is not float32/float64 NumPy."""
    return parallel.compiled(a, "_numba_kernels")


# --- linear combinations of strided slices ----------------------------------------------


def _combine(mat, srcs, dsts, accumulate: bool = False) -> None:
    """``dsts[i] (+)= sum_j mat[i, j] * srcs[j]`` for equally shaped arrays.

    Zero coefficients are skipped, +-1 need no multiplication, and a leading pair
    ``s0 +- s1`` is one call; other coefficients go through a per-thread temporary.
    """
    xp = get_array_module(dsts[0])
    for i, dst in enumerate(dsts):
        terms = [(mat[i, j], s) for j, s in enumerate(srcs) if mat[i, j] != 0]
        terms.sort(key=lambda t: t[0] != 1)  # a +1 term first saves a negation
        if not accumulate:
            if not terms:
                dst[...] = 0
                continue
            (c0, s0), terms = terms[0], terms[1:]
            if terms and c0 == 1 and abs(terms[0][0]) == 1:
                (c1, s1), terms = terms[0], terms[1:]
                (xp.add if c1 == 1 else xp.subtract)(s0, s1, out=dst)
            elif c0 == 1:
                xp.copyto(dst, s0)
            elif c0 == -1:
                xp.negative(s0, out=dst)
            else:
                xp.multiply(s0, dst.dtype.type(c0), out=dst)
        for c, s in terms:
            if c == 1:
                xp.add(dst, s, out=dst)
            elif c == -1:
                xp.subtract(dst, s, out=dst)
            else:
                tmp = scratch(xp, "wino_tmp", s.shape, dst.dtype)
                xp.multiply(s, dst.dtype.type(c), out=tmp)
                xp.add(dst, tmp, out=dst)


def _strided(a, axis: int, start: int, count: int, step: int):
    """``count`` entries of ``a`` along ``axis`` from ``start`` every ``step``."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, start + step * (count - 1) + 1, step)
    return a[tuple(index)]


def _adjoint_scatter(matT, srcs, dst, axis: int, m: int, n: int) -> None:
    """Adjoint of reading n overlapping tiles (stride m, width a) along ``axis`` and
    transforming them with ``mat``: ``dst[.., m*t + j, ..] += sum_k mat[k, j] srcs[k][.., t, ..]``.

    Offsets ``j < m`` cover ``[0, m*n)`` once, so they are assigned; only the ``a - m``
    lines past that are zeroed first and the offsets ``j >= m`` (tile overlaps) added.
    """
    a = matT.shape[0]
    tail = [slice(None)] * dst.ndim
    tail[axis] = slice(m * n, None)
    dst[tuple(tail)] = 0
    for j in range(a):
        target = _strided(dst, axis, j, n, m)
        _combine(matT[j : j + 1], srcs, [target], accumulate=j >= m)


# --- the three transforms ---------------------------------------------------------------


class _Geometry(NamedTuple):
    """Sizes of one Winograd convolution: input (C, H, W, N), pad, tiles TY x TX."""

    C: int
    H: int
    W: int
    N: int
    F: int
    pad: int
    Ho: int
    Wo: int
    TY: int
    TX: int
    t: WinogradTransform

    @property
    def padded(self) -> tuple[int, int]:
        """Rows and columns the tiles read: ``m * tiles + 2`` (zeros past the input)."""
        return self.t.m * self.TY + 2, self.t.m * self.TX + 2

    @property
    def tiles(self) -> int:
        return self.N * self.TY * self.TX


def geometry(x_shape, F: int, pad: int, m: int) -> _Geometry:
    """The tiling of a 3x3 stride-1 convolution of x (C, H, W, N) into m x m tiles."""
    C, H, W, N = x_shape
    Ho, Wo = H + 2 * pad - 2, W + 2 * pad - 2
    return _Geometry(C, H, W, N, F, pad, Ho, Wo, -(-Ho // m), -(-Wo // m), TRANSFORMS[m])


def _kron_g(t: WinogradTransform, xp, dtype):
    """``kron(G, G)`` (a*a, 9): row ``i*a + k``, column ``3*p + q`` holds ``G[i, p] G[k, q]``,
    so ``(G w G^T)[i, k]`` is row ``i*a + k`` times the flattened 3x3 filter w."""
    return xp.asarray(np.kron(t.G, t.G), dtype=dtype)


def filter_transform(w, t: WinogradTransform):
    """U (a*a, F, C) with ``U[i*a + k, f, c] = (G w[f, c] G^T)[i, k]``: one GEMM,
    ``kron(G, G) (a*a, 9) @ w (9, F*C)``."""
    xp = get_array_module(w)
    F, C = w.shape[:2]
    U = _kron_g(t, xp, w.dtype) @ w.reshape(F * C, 9).T
    return U.reshape(t.alpha**2, F, C)


def filter_grad(dU, g: _Geometry, dtype):
    """dw (F, C, 3, 3) from dU (a*a, F, C): the adjoint of :func:`filter_transform`,
    ``dU^T (F*C, a*a) @ kron(G, G)``."""
    xp = get_array_module(dU)
    a2 = g.t.alpha**2
    dw = dU.reshape(a2, g.F * g.C).T @ _kron_g(g.t, xp, dtype)
    return dw.reshape(g.F, g.C, 3, 3)


def _bytes_per_channel(g: _Geometry, itemsize: int) -> int:
    Hp, Wp = g.padded
    return g.N * (Hp * Wp + g.t.alpha * g.TY * Wp) * itemsize


def input_transform(x, V, g: _Geometry) -> None:
    """V (a*a, C, T) = ``B^T d B`` for every input tile d of x (C, H, W, N) (threaded)."""
    xp = get_array_module(x)
    t, a, m = g.t, g.t.alpha, g.t.m
    Hp, Wp = g.padded
    p, H, W = g.pad, g.H, g.W
    BT = t.BT

    def block(c0: int, c1: int) -> None:
        c = c1 - c0
        xpad = scratch(xp, "wino_xpad", (c, Hp, Wp, g.N), x.dtype)
        xpad[:, :p] = 0
        xpad[:, p + H :] = 0
        xpad[:, p : p + H, :p] = 0
        xpad[:, p : p + H, p + W :] = 0
        xpad[:, p : p + H, p : p + W] = x[c0:c1]
        R = scratch(xp, "wino_rows", (a, c, g.TY, Wp, g.N), x.dtype)
        _combine(BT, [_strided(xpad, 1, j, g.TY, m) for j in range(a)], list(R))
        Vb = V[:, c0:c1].reshape(a, a, c, g.TY, g.TX, g.N)
        for i in range(a):
            cols = [_strided(R[i], 2, j, g.TX, m) for j in range(a)]
            _combine(BT, cols, list(Vb[i]))

    parallel.run(block, parallel.blocks(g.C, _bytes_per_channel(g, x.dtype.itemsize)))


def output_transform(M, out, b, g: _Geometry) -> None:
    """out (F, H', W', N) = ``A^T M A + b`` per tile, cropped to H' x W' (threaded)."""
    xp = get_array_module(M)
    t, a, m = g.t, g.t.alpha, g.t.m
    AT = t.AT
    per_f = g.N * g.TY * g.TX * (a * a + m * a) * M.dtype.itemsize

    def block(f0: int, f1: int) -> None:
        f = f1 - f0
        Mb = M[:, f0:f1].reshape(a, a, f, g.TY, g.TX, g.N)
        S = scratch(xp, "wino_S", (m, a, f, g.TY, g.TX, g.N), M.dtype)
        for k in range(a):
            _combine(AT, list(Mb[:, k]), list(S[:, k]))
        ob = out[f0:f1]
        for r in range(m):
            for s in range(m):
                dst = ob[:, r::m, s::m]
                nr, ns = dst.shape[1:3]
                _combine(AT[s : s + 1], [S[r, k, :, :nr, :ns] for k in range(a)], [dst])
        ob += b[f0:f1, None, None, None]

    parallel.run(block, parallel.blocks(g.F, per_f))


def dout_transform(dout, dM, db, g: _Geometry) -> None:
    """dM (a*a, F, T): the adjoint of :func:`output_transform` applied to dout
    (F, H', W', N); db (F,) receives dout's sums over (H', W', N) (threaded)."""
    xp = get_array_module(dout)
    t, a, m = g.t, g.t.alpha, g.t.m
    A = t.AT.T  # (a, m)
    crop = g.Ho % m or g.Wo % m
    per_f = g.N * g.TY * g.TX * (a * a + a * m + m * m) * dout.dtype.itemsize

    def block(f0: int, f1: int) -> None:
        f = f1 - f0
        d = dout[f0:f1]
        db[f0:f1] = d.sum(axis=(1, 2, 3))
        if crop:  # tiles past the edge see zero gradient
            dp = scratch(xp, "wino_dpad", (f, m * g.TY, m * g.TX, g.N), dout.dtype)
            dp[:, g.Ho :] = 0
            dp[:, : g.Ho, g.Wo :] = 0
            dp[:, : g.Ho, : g.Wo] = d
            d = dp
        P = scratch(xp, "wino_P", (a, m, f, g.TY, g.TX, g.N), dout.dtype)
        for s in range(m):
            _combine(A, [d[:, r::m, s::m] for r in range(m)], list(P[:, s]))
        dMb = dM[:, f0:f1].reshape(a, a, f, g.TY, g.TX, g.N)
        for k in range(a):
            _combine(A, list(P[k]), list(dMb[k]))

    parallel.run(block, parallel.blocks(g.F, per_f))


def input_grad(dV, dx, g: _Geometry) -> None:
    """dx (C, H, W, N): the adjoint of :func:`input_transform` applied to dV (threaded)."""
    xp = get_array_module(dV)
    a, m = g.t.alpha, g.t.m
    B = g.t.BT.T
    Hp, Wp = g.padded
    p = g.pad

    def block(c0: int, c1: int) -> None:
        c = c1 - c0
        dVb = dV[:, c0:c1].reshape(a, a, c, g.TY, g.TX, g.N)
        dR = scratch(xp, "wino_rows", (a, c, g.TY, Wp, g.N), dV.dtype)
        for i in range(a):
            _adjoint_scatter(B, list(dVb[i]), dR[i], 2, m, g.TX)
        dpad = scratch(xp, "wino_xpad", (c, Hp, Wp, g.N), dV.dtype)
        _adjoint_scatter(B, list(dR), dpad, 1, m, g.TY)
        dx[c0:c1] = dpad[:, p : p + g.H, p : p + g.W]

    parallel.run(block, parallel.blocks(g.C, _bytes_per_channel(g, dV.dtype.itemsize)))


# --- forward and backward ---------------------------------------------------------------


def winograd_forward(x, w, b, pad: int, m: int = 2, recompute: bool = False):
    """3x3 stride-1 convolution of x (C, H, W, N) with w (F, C, 3, 3), b (F,), zero padding
    ``pad``, in m x m tiles -> out (F, H', W', N) (contiguous), cache.

    The cache keeps the transformed input V, or (``recompute``) x itself.
    """
    xp = get_array_module(x)
    g = geometry(x.shape, w.shape[0], pad, m)
    w = w.astype(x.dtype, copy=False)
    b = b.astype(x.dtype, copy=False)
    k = compiled_kernels(x) if m == 4 else None
    if k is not None:
        return _forward4(k, np.ascontiguousarray(x), w, b, g, recompute)
    a2 = g.t.alpha**2
    U = filter_transform(w, g.t)
    shape = (a2, g.C, g.tiles)
    V = scratch(xp, "wino_V", shape, x.dtype) if recompute else xp.empty(shape, x.dtype)
    input_transform(x, V, g)
    M = xp.matmul(U, V, out=scratch(xp, "wino_M", (a2, g.F, g.tiles), x.dtype))
    out = xp.empty((g.F, g.Ho, g.Wo, g.N), dtype=x.dtype)
    output_transform(M, out, b, g)
    return out, (g, U, x if recompute else None, None if recompute else V)


def winograd_backward(dout, cache, need_dx: bool = True):
    """Gradients of :func:`winograd_forward`: dout (F, H', W', N) -> dx (C, H, W, N) or
    None (``need_dx=False``), dw (F, C, 3, 3), db (F,)."""
    g, U, x, V = cache
    if g.t.m == 4 and (k := compiled_kernels(dout)) is not None:
        return _backward4(k, np.ascontiguousarray(dout), cache, need_dx)
    xp = get_array_module(dout)
    dtype = dout.dtype
    a2 = g.t.alpha**2
    if V is None:
        V = scratch(xp, "wino_V", (a2, g.C, g.tiles), dtype)
        input_transform(x.astype(dtype, copy=False), V, g)
    dM = scratch(xp, "wino_dM", (a2, g.F, g.tiles), dtype)
    db = xp.empty(g.F, dtype=dtype)
    dout_transform(dout, dM, db, g)
    dU = xp.matmul(dM, V.astype(dtype, copy=False).transpose(0, 2, 1))
    dw = filter_grad(dU, g, dtype)
    dx = None
    if need_dx:
        dV = xp.matmul(
            U.astype(dtype, copy=False).transpose(0, 2, 1),
            dM,
            out=scratch(xp, "wino_dV", (a2, g.C, g.tiles), dtype),
        )
        dx = xp.empty((g.C, g.H, g.W, g.N), dtype=dtype)
        input_grad(dV, dx, g)
    return dx, dw, db


# --- the compiled F(4x4,3x3) path, in chunks of tiles ---------------------------------------

CHUNK_BYTES = 32 * 2**20
"""Target bytes of one chunk's transformed arrays on the compiled F(4x4,3x3) path: a layer's
tiles go through the transforms and GEMMs a chunk at a time, so the products M, dM and dV
(scratch) stay about this size instead of 2.25x the layer's largest activation."""


def _chunks(g: _Geometry, itemsize: int) -> list[tuple[int, int]]:
    """Tile ranges ``[k0, k1)`` of about :data:`CHUNK_BYTES` of transformed data each."""
    per = max(1, CHUNK_BYTES // (36 * max(g.F, g.C) * g.N * itemsize))
    n = g.TY * g.TX
    return [(k0, min(n, k0 + per)) for k0 in range(0, n, per)]


def _forward4(k, x, w, b, g: _Geometry, recompute: bool, pool: bool = False):
    """The compiled F(4x4,3x3) forward pass; with ``pool``, a 2x2 stride-2 max pool in
    the output transform: returns ``(pooled, ix)`` in place of the output."""
    U = filter_transform(w, g.t)
    N = g.N
    V = None
    if not recompute:  # the cache: all tiles at once
        V = np.empty((36, g.C, g.tiles), x.dtype)
        k.input_transform4(x, V, g.pad, g.TY, g.TX, 0, g.TY * g.TX)
    if pool:
        shape = (g.F, (g.Ho - 2) // 2 + 1, (g.Wo - 2) // 2 + 1, N)
        out = (np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.uint8))
    else:
        out = np.empty((g.F, g.Ho, g.Wo, N), dtype=x.dtype)
    for k0, k1 in _chunks(g, x.dtype.itemsize):
        cols = (k1 - k0) * N
        if V is None:
            Vc = scratch(np, "wino_V", (36, g.C, cols), x.dtype)
            k.input_transform4(x, Vc, g.pad, g.TY, g.TX, k0, k1)
        else:
            Vc = V[:, :, k0 * N : k1 * N]
        Mc = parallel.matmul(U, Vc, scratch(np, "wino_M", (36, g.F, cols), x.dtype))
        if pool:
            k.output_transform4_pool2(Mc, b, g.TY, g.TX, k0, k1, *out)
        else:
            k.output_transform4(Mc, out, b, g.TY, g.TX, k0, k1)
    return out, (g, U, x if recompute else None, V)


def _backward4(k, dout, cache, need_dx: bool, ix=None):
    """The compiled F(4x4,3x3) backward pass; with the pool's ``ix``, dout is the pooled
    output's gradient."""
    g, U, x, V = cache
    dtype, N = dout.dtype, g.N
    U = U.astype(dtype, copy=False)
    Ut = U.transpose(0, 2, 1)
    db = np.empty(g.F, dtype=dtype)
    k.channel_sums(dout, db)  # pooled: each gradient goes to one conv output
    dU = np.zeros((36, g.F, g.C), dtype=dtype)
    Hp, Wp = g.padded
    if need_dx:
        dxp = scratch(np, "wino_dxp", (g.C, Hp, Wp, N), dtype)
        dxp[...] = 0
    for k0, k1 in _chunks(g, dtype.itemsize):
        cols = (k1 - k0) * N
        dMc = scratch(np, "wino_dM", (36, g.F, cols), dtype)
        if ix is None:
            k.dout_transform4(dout, dMc, g.TY, g.TX, k0, k1)
        else:
            k.dout_transform4_pool2(dout, ix, dMc, g.TY, g.TX, k0, k1)
        if V is None:
            Vc = scratch(np, "wino_V", (36, g.C, cols), dtype)
            k.input_transform4(x.astype(dtype, copy=False), Vc, g.pad, g.TY, g.TX, k0, k1)
        else:
            Vc = V[:, :, k0 * N : k1 * N].astype(dtype, copy=False)
        dU += parallel.matmul(dMc, Vc.transpose(0, 2, 1), scratch(np, "wino_dU", dU.shape, dtype))
        if need_dx:
            dVc = parallel.matmul(Ut, dMc, scratch(np, "wino_dV", (36, g.C, cols), dtype))
            k.input_grad4(dVc, dxp, g.TY, g.TX, k0, k1)
    dx = None
    if need_dx:
        dx = np.empty((g.C, g.H, g.W, N), dtype=dtype)
        k.crop4(dxp, g.pad, dx)
    return dx, filter_grad(dU, g, dtype), db


def pool_fusable(x) -> bool:
    """Whether :func:`winograd_pool_forward` can run for the (C, H, W, N) array x: the
    compiled kernels are available for it."""
    return compiled_kernels(x) is not None


def winograd_pool_forward(x, w, b, pad: int, recompute: bool = False):
    """F(4x4,3x3) convolution (as :func:`winograd_forward`) followed by a 2x2 stride-2 max
    pool in floor mode, fused: the conv output is never stored. Compiled kernels only
    (:func:`pool_fusable`). Returns pooled (F, H'', W'', N), ix (uint8: the window offset
    ``2 * kh + kw`` of each first maximum) and the conv's cache."""
    k = compiled_kernels(x)
    if k is None:
        raise RuntimeError("winograd_pool_forward: needs the compiled kernels (numba)")
    g = geometry(x.shape, w.shape[0], pad, 4)
    w, b = w.astype(x.dtype, copy=False), b.astype(x.dtype, copy=False)
    (pooled, ix), cache = _forward4(k, np.ascontiguousarray(x), w, b, g, recompute, pool=True)
    return pooled, ix, cache


def winograd_pool_backward(dp, ix, cache, need_dx: bool = True):
    """Gradients of :func:`winograd_pool_forward` from the pooled gradient dp
    (F, H'', W'', N): dx (C, H, W, N) or None, dw, db."""
    k = compiled_kernels(dp)
    if k is None:
        raise RuntimeError("winograd_pool_backward: needs the compiled kernels (numba)")
    return _backward4(k, np.ascontiguousarray(dp), cache, need_dx, ix)


__all__ = [
    "CHUNK_BYTES",
    "F2",
    "F4",
    "TRANSFORMS",
    "WinogradTransform",
    "applies",
    "pool_fusable",
    "winograd_backward",
    "winograd_forward",
    "winograd_pool_backward",
    "winograd_pool_forward",
]
