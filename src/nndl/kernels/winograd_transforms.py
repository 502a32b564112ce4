"""The Winograd F(m x m, 3 x 3) transforms in NumPy: the matrices, the tiling, and the
four linear maps of a layer (the reference for the compiled kernels, and their fallback).

What it computes: for the m x m output tiles of a 3x3 stride-1 convolution of x
(C, H, W, N) (Lavin & Gray, 2015; see :mod:`nndl.kernels.winograd`): the filter transform
``U = G g G^T`` (and its adjoint, the filter gradient), the input transform
``V = B^T d B`` of every (m+2) x (m+2) input tile d, the output transform
``A^T M A + b`` (cropped to H' x W'), and the adjoints of the last two for the backward
pass (the gradient is the adjoint of the forward's linear maps, so it is exact).

Why it is fast: each transform is a few linear combinations of whole strided slices
(one NumPy call per nonzero coefficient, +-1 needing no multiplication) over blocks of
channels, on :mod:`nndl.kernels.parallel`'s threads; slices of the (C, H, W, N) layout keep
contiguous runs of N. The filter transform and its adjoint are one GEMM each.

Memory, per block of channels (one per thread, scratch): a zero-padded input block, the
row-transform block and a temporary of the same size, each about
:data:`nndl.kernels.parallel.BLOCK_BYTES`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import get_array_module
from . import parallel
from .scratch import scratch


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


class Geometry(NamedTuple):
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


def geometry(x_shape, F: int, pad: int, m: int) -> Geometry:
    """The tiling of a 3x3 stride-1 convolution of x (C, H, W, N) into m x m tiles."""
    C, H, W, N = x_shape
    Ho, Wo = H + 2 * pad - 2, W + 2 * pad - 2
    return Geometry(C, H, W, N, F, pad, Ho, Wo, -(-Ho // m), -(-Wo // m), TRANSFORMS[m])


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


def filter_grad(dU, g: Geometry, dtype):
    """dw (F, C, 3, 3) from dU (a*a, F, C): the adjoint of :func:`filter_transform`,
    ``dU^T (F*C, a*a) @ kron(G, G)``."""
    xp = get_array_module(dU)
    a2 = g.t.alpha**2
    dw = dU.reshape(a2, g.F * g.C).T @ _kron_g(g.t, xp, dtype)
    return dw.reshape(g.F, g.C, 3, 3)


def _bytes_per_channel(g: Geometry, itemsize: int) -> int:
    Hp, Wp = g.padded
    return g.N * (Hp * Wp + g.t.alpha * g.TY * Wp) * itemsize


def input_transform(x, V, g: Geometry) -> None:
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


def output_transform(M, out, b, g: Geometry) -> None:
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


def dout_transform(dout, dM, db, g: Geometry) -> None:
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


def input_grad(dV, dx, g: Geometry) -> None:
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


__all__ = [
    "F2",
    "F4",
    "TRANSFORMS",
    "Geometry",
    "WinogradTransform",
    "dout_transform",
    "filter_grad",
    "filter_transform",
    "geometry",
    "input_grad",
    "input_transform",
    "output_transform",
]
