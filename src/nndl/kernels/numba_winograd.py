"""Optional compiled kernels (numba) for Winograd F(4x4,3x3) (:mod:`nndl.kernels.winograd`).

Each transform computes what the NumPy transform of :mod:`nndl.kernels.winograd` computes for
F(4x4,3x3) (the tests compare them), but tile by tile: a tile is read once, transformed
in registers and written once, where NumPy makes one pass over memory per term of every
transform. Every kernel does the channels (or filters) ``[c0, c1)`` of its arrays, its
last two arguments, without the GIL (``nogil``); :func:`nndl.kernels.parallel.run_compiled` hands
each of nndl's threads one range. Each channel's work, including its bias-gradient sum,
is done by one thread in a fixed order, so results do not depend on the thread count.

Why serial kernels on nndl's threads rather than numba's ``prange``: a parallel kernel
takes about three times as long to compile (numba outlines the loop into a gufunc and
optimises and links its body again), and a fresh install, CI and the first
``nndl train`` pay that compilation; the run time is the same.

Importing this module raises ImportError without numba; :mod:`nndl.kernels.winograd` then uses
its NumPy path. ``NNDL_NUMBA=0`` in the environment disables the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- F(4x4, 3x3) with the transforms written out ------------------------------------------
# Lavin & Gray's F(4,3) matrices (nndl.kernels.winograd.F4) spelled out as sums, so each tile is a
# straight run of loads, adds and stores that LLVM vectorises across the batch (the
# innermost, contiguous axis); 1.2-2x kernels that read the matrices at run time.


@njit(inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):  # pragma: no cover - compiled
    """B^T d for F(4,3): rows [4,0,-5,0,1,0], [0,-4,-4,1,1,0], [0,4,-4,-1,1,0],
    [0,-2,-1,2,1,0], [0,2,-1,-2,1,0], [0,4,0,-5,0,1]. Constants take d0's type (an int
    literal would promote float32 to float64)."""
    t = type(d0)
    c2, c4, c5 = t(2), t(4), t(5)
    s = d4 - c4 * d2
    u = d3 - c4 * d1
    p = d4 - d2
    q = c2 * (d3 - d1)
    return c4 * d0 - c5 * d2 + d4, s + u, s - u, p + q, p - q, c4 * d1 - c5 * d3 + d5


@njit(inline="always")
def _b6(r0, r1, r2, r3, r4, r5):  # pragma: no cover - compiled
    """B r (the adjoint of _bt6): the columns of B^T."""
    t = type(r0)
    c2, c4, c5 = t(2), t(4), t(5)
    return (
        c4 * r0,
        c4 * (r2 - r1 + r5) + c2 * (r4 - r3),
        -c5 * r0 - c4 * (r1 + r2) - r3 - r4,
        r1 - r2 + c2 * (r3 - r4) - c5 * r5,
        r0 + r1 + r2 + r3 + r4,
        r5,
    )


@njit(inline="always")
def _at4(m0, m1, m2, m3, m4, m5):  # pragma: no cover - compiled
    """A^T m for F(4,3): rows [1,1,1,1,1,0], [0,1,-1,2,-2,0], [0,1,1,4,4,0], [0,1,-1,8,-8,1]."""
    t = type(m0)
    a = m1 + m2
    b = m1 - m2
    c = m3 + m4
    d = m3 - m4
    return m0 + a + c, b + t(2) * d, a + t(4) * c, b + t(8) * d + m5


@njit(inline="always")
def _a6(g0, g1, g2, g3):  # pragma: no cover - compiled
    """A g (the adjoint of _at4)."""
    t = type(g0)
    p = g0 + g2
    q = g1 + g3
    p2 = g0 + t(4) * g2
    q2 = t(2) * g1 + t(8) * g3
    return g0, p + q, p - q, p2 + q2, p2 - q2, g3


# Loops over the batch index every array explicitly ([c, h, w, n] on C-contiguous
# arrays): with slices (numba's 'A' layout) the strides are unknown and LLVM leaves the
# loops scalar, 3x slower. Every kernel works on the tiles k0 <= k < k1 (k = ty * TX + tx;
# column (k - k0) * N + n of V, M, dM, dV), so a layer runs in chunks of tiles whose
# transformed arrays stay small.


@njit(nogil=True, cache=True, error_model="numpy")
def input_transform4(x, V, pad, TY, TX, k0, k1, c0, c1):  # pragma: no cover - compiled
    """V (36, C, (k1 - k0) * N) = B^T d B for the 6x6 input tiles d of x (C, H, W, N).

    Per channel: the input rows the tiles read, copied once with their zero border into
    xp, then per tile a column pass from xp into a small buffer r (6, 6, N) and a row
    pass from r into V.
    """
    _, H, W, N = x.shape
    ty0, ty1 = k0 // TX, (k1 - 1) // TX + 1
    R, Wp = 4 * (ty1 - ty0) + 2, 4 * TX + 2
    for c in range(c0, c1):
        xp = np.zeros((R, Wp, N), x.dtype)
        r = np.empty((6, 6, N), x.dtype)
        for i in range(R):
            h = 4 * ty0 + i - pad
            if 0 <= h < H:
                for w in range(W):
                    for n in range(N):
                        xp[i, w + pad, n] = x[c, h, w, n]
        for k in range(k0, k1):
            h0, w0 = 4 * (k // TX - ty0), 4 * (k % TX)
            for j in range(6):  # columns: r[:, j] = B^T d[:, j]
                w = w0 + j
                for n in range(N):
                    v = _bt6(xp[h0, w, n], xp[h0 + 1, w, n], xp[h0 + 2, w, n],
                             xp[h0 + 3, w, n], xp[h0 + 4, w, n], xp[h0 + 5, w, n])  # fmt: skip
                    r[0, j, n], r[1, j, n], r[2, j, n] = v[0], v[1], v[2]
                    r[3, j, n], r[4, j, n], r[5, j, n] = v[3], v[4], v[5]
            t0 = (k - k0) * N
            for i in range(6):  # rows: V[6i:6i+6] = B^T r[i]
                q = 6 * i
                for n in range(N):
                    v = _bt6(r[i, 0, n], r[i, 1, n], r[i, 2, n], r[i, 3, n], r[i, 4, n], r[i, 5, n])
                    t = t0 + n
                    V[q, c, t], V[q + 1, c, t], V[q + 2, c, t] = v[0], v[1], v[2]
                    V[q + 3, c, t], V[q + 4, c, t], V[q + 5, c, t] = v[3], v[4], v[5]


@njit(nogil=True, cache=True, error_model="numpy")
def output_transform4(M, out, b, TY, TX, k0, k1, f0, f1):  # pragma: no cover - compiled
    """out (F, H', W', N) = A^T m A + b for the tiles m of M (36, F, (k1 - k0) * N),
    cropped to H' x W'."""
    _, Ho, Wo, N = out.shape
    for f in range(f0, f1):
        s = np.empty((4, 6, N), out.dtype)
        y = np.empty((4, 4, N), out.dtype)
        bf = b[f]
        for k in range(k0, k1):
            t0 = (k - k0) * N
            for j in range(6):  # columns: s[:, j] = A^T M[:, j]
                for n in range(N):
                    t = t0 + n
                    v = _at4(M[j, f, t], M[6 + j, f, t], M[12 + j, f, t], M[18 + j, f, t],
                             M[24 + j, f, t], M[30 + j, f, t])  # fmt: skip
                    s[0, j, n], s[1, j, n], s[2, j, n], s[3, j, n] = v[0], v[1], v[2], v[3]
            for i in range(4):  # rows: y[i] = A^T s[i] + b
                for n in range(N):
                    v = _at4(s[i, 0, n], s[i, 1, n], s[i, 2, n], s[i, 3, n], s[i, 4, n], s[i, 5, n])
                    y[i, 0, n], y[i, 1, n] = v[0] + bf, v[1] + bf
                    y[i, 2, n], y[i, 3, n] = v[2] + bf, v[3] + bf
            h0, w0 = 4 * (k // TX), 4 * (k % TX)
            for i in range(min(4, Ho - h0)):
                for j in range(min(4, Wo - w0)):
                    for n in range(N):
                        out[f, h0 + i, w0 + j, n] = y[i, j, n]


@njit(nogil=True, cache=True, error_model="numpy")
def dout_transform4(dout, dM, TY, TX, k0, k1, f0, f1):  # pragma: no cover - compiled
    """dM (36, F, (k1 - k0) * N) = A g A^T for the 4x4 tiles g of dout (F, H', W', N)
    (zero past the edge): the adjoint of output_transform4."""
    _, Ho, Wo, N = dout.shape
    for f in range(f0, f1):
        g = np.empty((4, 4, N), dout.dtype)
        p = np.empty((6, 4, N), dout.dtype)
        for k in range(k0, k1):
            h0, w0 = 4 * (k // TX), 4 * (k % TX)
            for i in range(4):
                for j in range(4):
                    if h0 + i < Ho and w0 + j < Wo:
                        for n in range(N):
                            g[i, j, n] = dout[f, h0 + i, w0 + j, n]
                    else:
                        for n in range(N):
                            g[i, j, n] = 0
            for j in range(4):  # columns: p[:, j] = A g[:, j]
                for n in range(N):
                    v = _a6(g[0, j, n], g[1, j, n], g[2, j, n], g[3, j, n])
                    p[0, j, n], p[1, j, n], p[2, j, n] = v[0], v[1], v[2]
                    p[3, j, n], p[4, j, n], p[5, j, n] = v[3], v[4], v[5]
            t0 = (k - k0) * N
            for i in range(6):  # rows: dM[6i:6i+6] = A p[i]
                q = 6 * i
                for n in range(N):
                    v = _a6(p[i, 0, n], p[i, 1, n], p[i, 2, n], p[i, 3, n])
                    t = t0 + n
                    dM[q, f, t], dM[q + 1, f, t], dM[q + 2, f, t] = v[0], v[1], v[2]
                    dM[q + 3, f, t], dM[q + 4, f, t], dM[q + 5, f, t] = v[3], v[4], v[5]


@njit(nogil=True, cache=True, error_model="numpy")
def input_grad4(dV, dxp, TY, TX, k0, k1, c0, c1):  # pragma: no cover - compiled
    """Write the adjoint of input_transform4 applied to dV (36, C, (k1 - k0) * N) into dxp
    (C, 4 TY + 2, 4 TX + 2, N), the gradient of the zero-padded input: per tile
    B dV B^T, summed over the overlapping tiles.

    Tiles overlap their left and upper neighbours by two rows or columns. Called for the
    chunks k0 = 0, ... in order, a position's first tile in row-major order writes it
    and later tiles add to it, so dxp needs no zeroing first (the tiles cover all of it).
    """
    N = dxp.shape[3]
    for c in range(c0, c1):
        r = np.empty((6, 6, N), dxp.dtype)
        for k in range(k0, k1):
            h0, w0 = 4 * (k // TX), 4 * (k % TX)
            t0 = (k - k0) * N
            for i in range(6):  # rows: r[i] = B dV[6i:6i+6]
                q = 6 * i
                for n in range(N):
                    t = t0 + n
                    v = _b6(dV[q, c, t], dV[q + 1, c, t], dV[q + 2, c, t], dV[q + 3, c, t],
                            dV[q + 4, c, t], dV[q + 5, c, t])  # fmt: skip
                    r[i, 0, n], r[i, 1, n], r[i, 2, n] = v[0], v[1], v[2]
                    r[i, 3, n], r[i, 4, n], r[i, 5, n] = v[3], v[4], v[5]
            for j in range(6):  # columns: dxp[:, j] (+)= B r[:, j]
                w = w0 + j
                fresh = w0 == 0 or j >= 2  # no tile to the left wrote this column
                top = fresh and h0 == 0  # ... nor one above its first two rows
                for n in range(N):
                    v = _b6(r[0, j, n], r[1, j, n], r[2, j, n], r[3, j, n], r[4, j, n], r[5, j, n])
                    if top:
                        dxp[c, h0, w, n] = v[0]
                        dxp[c, h0 + 1, w, n] = v[1]
                    else:
                        dxp[c, h0, w, n] += v[0]
                        dxp[c, h0 + 1, w, n] += v[1]
                    if fresh:
                        dxp[c, h0 + 2, w, n] = v[2]
                        dxp[c, h0 + 3, w, n] = v[3]
                        dxp[c, h0 + 4, w, n] = v[4]
                        dxp[c, h0 + 5, w, n] = v[5]
                    else:
                        dxp[c, h0 + 2, w, n] += v[2]
                        dxp[c, h0 + 3, w, n] += v[3]
                        dxp[c, h0 + 4, w, n] += v[4]
                        dxp[c, h0 + 5, w, n] += v[5]


@njit(nogil=True, cache=True, error_model="numpy")
def crop4(src, pad, dst, c0, c1):  # pragma: no cover - compiled
    """dst (C, H, W, N) = src[:, pad:pad+H, pad:pad+W] for the padded gradient src."""
    _, H, W, N = dst.shape
    for c in range(c0, c1):
        for h in range(H):
            for w in range(W):
                for n in range(N):
                    dst[c, h, w, n] = src[c, h + pad, w + pad, n]


@njit(nogil=True, cache=True, error_model="numpy")
def channel_sums(a, sums, c0, c1):  # pragma: no cover - compiled
    """sums (C,) = the sum of each channel of a (C, ...) (float64 partial sums per batch
    index, then over them: a fixed order)."""
    _, H, W, N = a.shape
    for c in range(c0, c1):
        acc = np.zeros(N)
        for h in range(H):
            for w in range(W):
                for n in range(N):
                    acc[n] += a[c, h, w, n]
        sums[c] = acc.sum()


# --- F(4x4, 3x3) followed by a 2x2 max pool of stride 2 ---------------------------------
# A 4x4 output tile holds whole 2x2 pool windows (tiles start at even rows and columns),
# so the pool runs inside the output transform and the full-size conv output is never
# written; backward, the pooled gradient is routed into the tile inside the dout
# transform.


@njit(nogil=True, cache=True, error_model="numpy")
def output_transform4_pool2(M, b, TY, TX, k0, k1, pooled, ix, f0, f1):  # pragma: no cover
    """pooled, ix (F, Hp, Wp, N): the 2x2 stride-2 max pool of A^T m A + b over the tiles
    m of M (36, F, (k1 - k0) * N); ix = the window offset (2 kh + kw) of the first
    maximum in row-major order. Windows past (Hp, Wp) (floor mode) are left out."""
    _, Hp, Wp, N = pooled.shape
    for f in range(f0, f1):
        s = np.empty((4, 6, N), pooled.dtype)
        y = np.empty((4, 4, N), pooled.dtype)
        bf = b[f]
        for k in range(k0, k1):
            t0 = (k - k0) * N
            for j in range(6):
                for n in range(N):
                    t = t0 + n
                    v = _at4(M[j, f, t], M[6 + j, f, t], M[12 + j, f, t], M[18 + j, f, t],
                             M[24 + j, f, t], M[30 + j, f, t])  # fmt: skip
                    s[0, j, n], s[1, j, n], s[2, j, n], s[3, j, n] = v[0], v[1], v[2], v[3]
            for i in range(4):
                for n in range(N):
                    v = _at4(s[i, 0, n], s[i, 1, n], s[i, 2, n], s[i, 3, n], s[i, 4, n], s[i, 5, n])
                    y[i, 0, n], y[i, 1, n] = v[0] + bf, v[1] + bf
                    y[i, 2, n], y[i, 3, n] = v[2] + bf, v[3] + bf
            for pi in range(2):
                ph = 2 * (k // TX) + pi
                for pj in range(2):
                    pw = 2 * (k % TX) + pj
                    if ph >= Hp or pw >= Wp:
                        continue
                    r, c = 2 * pi, 2 * pj
                    for n in range(N):
                        best = y[r, c, n]
                        arg = 0
                        v = y[r, c + 1, n]
                        take = v > best
                        best = v if take else best
                        arg = 1 if take else arg
                        v = y[r + 1, c, n]
                        take = v > best
                        best = v if take else best
                        arg = 2 if take else arg
                        v = y[r + 1, c + 1, n]
                        take = v > best
                        best = v if take else best
                        arg = 3 if take else arg
                        pooled[f, ph, pw, n] = best
                        ix[f, ph, pw, n] = arg


@njit(nogil=True, cache=True, error_model="numpy")
def dout_transform4_pool2(dp, ix, dM, TY, TX, k0, k1, f0, f1):  # pragma: no cover - compiled
    """dM (36, F, (k1 - k0) * N) = A g A^T for the 4x4 tiles g of the conv output's
    gradient, which the pooled gradient dp (F, Hp, Wp, N) puts at each window's maximum
    (ix) and zero elsewhere: the adjoint of output_transform4_pool2's pool and transform."""
    _, Hp, Wp, N = dp.shape
    for f in range(f0, f1):
        g = np.empty((4, 4, N), dp.dtype)
        p = np.empty((6, 4, N), dp.dtype)
        zero = dp.dtype.type(0)
        for k in range(k0, k1):
            for pi in range(2):
                ph = 2 * (k // TX) + pi
                for pj in range(2):
                    pw = 2 * (k % TX) + pj
                    r, c = 2 * pi, 2 * pj
                    if ph >= Hp or pw >= Wp:
                        for n in range(N):
                            g[r, c, n] = zero
                            g[r, c + 1, n] = zero
                            g[r + 1, c, n] = zero
                            g[r + 1, c + 1, n] = zero
                        continue
                    for n in range(N):
                        v = dp[f, ph, pw, n]
                        a = ix[f, ph, pw, n]
                        g[r, c, n] = v if a == 0 else zero
                        g[r, c + 1, n] = v if a == 1 else zero
                        g[r + 1, c, n] = v if a == 2 else zero
                        g[r + 1, c + 1, n] = v if a == 3 else zero
            for j in range(4):
                for n in range(N):
                    v = _a6(g[0, j, n], g[1, j, n], g[2, j, n], g[3, j, n])
                    p[0, j, n], p[1, j, n], p[2, j, n] = v[0], v[1], v[2]
                    p[3, j, n], p[4, j, n], p[5, j, n] = v[3], v[4], v[5]
            t0 = (k - k0) * N
            for i in range(6):
                q = 6 * i
                for n in range(N):
                    v = _a6(p[i, 0, n], p[i, 1, n], p[i, 2, n], p[i, 3, n])
                    t = t0 + n
                    dM[q, f, t], dM[q + 1, f, t], dM[q + 2, f, t] = v[0], v[1], v[2]
                    dM[q + 3, f, t], dM[q + 4, f, t], dM[q + 5, f, t] = v[3], v[4], v[5]


__all__ = [
    "input_transform4",
    "output_transform4",
    "dout_transform4",
    "input_grad4",
    "crop4",
    "channel_sums",
    "output_transform4_pool2",
    "dout_transform4_pool2",
]
