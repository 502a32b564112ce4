"""Optional compiled kernels (numba) for the Winograd transforms of :mod:`nndl.winograd`.

Each kernel computes exactly what the NumPy function of the same name in
:mod:`nndl.winograd` computes (the tests compare them), but tile by tile: a tile is read
once, transformed in registers and written once, where NumPy makes one pass over memory
per term of every transform. Channels run in parallel (``prange``); each channel's work,
including its bias-gradient sum, is done by one thread in a fixed order, so results do
not depend on the thread count.

Importing this module raises ImportError without numba; :mod:`nndl.winograd` then uses
its NumPy path. ``NNDL_NUMBA=0`` in the environment disables the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def input_transform(x, V, BT, pad, m, TY, TX):  # pragma: no cover - compiled
    C, H, W, N = x.shape
    a = BT.shape[0]
    for c in prange(C):
        tile = np.empty((a, a, N), x.dtype)
        rows = np.empty((a, a, N), x.dtype)
        for ty in range(TY):
            for tx in range(TX):
                for i in range(a):
                    h = m * ty + i - pad
                    for j in range(a):
                        w = m * tx + j - pad
                        if 0 <= h < H and 0 <= w < W:
                            tile[i, j, :] = x[c, h, w, :]
                        else:
                            tile[i, j, :] = 0
                for i in range(a):
                    for j in range(a):
                        rows[i, j, :] = 0
                        for k in range(a):
                            cf = BT[i, k]
                            if cf != 0:
                                for n in range(N):
                                    rows[i, j, n] += cf * tile[k, j, n]
                t0 = (ty * TX + tx) * N
                for i in range(a):
                    for j in range(a):
                        out = V[i * a + j, c, t0 : t0 + N]
                        out[:] = 0
                        for k in range(a):
                            cf = BT[j, k]
                            if cf != 0:
                                for n in range(N):
                                    out[n] += cf * rows[i, k, n]


@njit(parallel=True, cache=True)
def output_transform(M, out, b, AT, TY, TX):  # pragma: no cover - compiled
    F, Ho, Wo, N = out.shape
    m, a = AT.shape
    for f in prange(F):
        S = np.empty((m, a, N), out.dtype)
        Y = np.empty(N, out.dtype)
        for ty in range(TY):
            for tx in range(TX):
                t0 = (ty * TX + tx) * N
                for i in range(m):
                    for k in range(a):
                        S[i, k, :] = 0
                        for r in range(a):
                            cf = AT[i, r]
                            if cf != 0:
                                src = M[r * a + k, f, t0 : t0 + N]
                                for n in range(N):
                                    S[i, k, n] += cf * src[n]
                for i in range(m):
                    h = m * ty + i
                    if h >= Ho:
                        continue
                    for j in range(m):
                        w = m * tx + j
                        if w >= Wo:
                            continue
                        Y[:] = 0
                        for k in range(a):
                            cf = AT[j, k]
                            if cf != 0:
                                for n in range(N):
                                    Y[n] += cf * S[i, k, n]
                        for n in range(N):
                            out[f, h, w, n] = Y[n] + b[f]


@njit(parallel=True, cache=True)
def dout_transform(dout, dM, db, AT, TY, TX):  # pragma: no cover - compiled
    F, Ho, Wo, N = dout.shape
    m, a = AT.shape
    for f in prange(F):
        d = np.empty((m, m, N), dout.dtype)
        P = np.empty((a, m, N), dout.dtype)
        total = 0.0
        for h in range(Ho):
            for w in range(Wo):
                for n in range(N):
                    total += dout[f, h, w, n]
        db[f] = total
        for ty in range(TY):
            for tx in range(TX):
                for i in range(m):
                    for j in range(m):
                        h, w = m * ty + i, m * tx + j
                        if h < Ho and w < Wo:
                            d[i, j, :] = dout[f, h, w, :]
                        else:
                            d[i, j, :] = 0
                for k in range(a):
                    for j in range(m):
                        P[k, j, :] = 0
                        for i in range(m):
                            cf = AT[i, k]
                            if cf != 0:
                                for n in range(N):
                                    P[k, j, n] += cf * d[i, j, n]
                t0 = (ty * TX + tx) * N
                for k in range(a):
                    for q in range(a):
                        dst = dM[k * a + q, f, t0 : t0 + N]
                        dst[:] = 0
                        for j in range(m):
                            cf = AT[j, q]
                            if cf != 0:
                                for n in range(N):
                                    dst[n] += cf * P[k, j, n]


@njit(parallel=True, cache=True)
def input_grad(dV, dx, BT, pad, m, TY, TX):  # pragma: no cover - compiled
    C, H, W, N = dx.shape
    a = BT.shape[0]
    for c in prange(C):
        R = np.empty((a, a, N), dx.dtype)
        D = np.empty(N, dx.dtype)
        dx[c] = 0
        for ty in range(TY):
            for tx in range(TX):
                t0 = (ty * TX + tx) * N
                for i in range(a):
                    for j in range(a):
                        R[i, j, :] = 0
                        for k in range(a):
                            cf = BT[k, j]
                            if cf != 0:
                                src = dV[i * a + k, c, t0 : t0 + N]
                                for n in range(N):
                                    R[i, j, n] += cf * src[n]
                for i2 in range(a):
                    h = m * ty + i2 - pad
                    if h < 0 or h >= H:
                        continue
                    for j in range(a):
                        w = m * tx + j - pad
                        if w < 0 or w >= W:
                            continue
                        D[:] = 0
                        for i in range(a):
                            cf = BT[i, i2]
                            if cf != 0:
                                for n in range(N):
                                    D[n] += cf * R[i, j, n]
                        for n in range(N):
                            dx[c, h, w, n] += D[n]


# --- F(4x4, 3x3) with the transforms written out ------------------------------------------
# The generic kernels above read the transform matrices at run time and skip zeros with
# branches; these spell out Lavin & Gray's F(4,3) matrices (nndl.winograd.F4) as sums, so
# each tile is a straight run of loads, adds and stores that LLVM vectorises across the
# batch (the innermost, contiguous axis).


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
# loops scalar, 3x slower.


@njit(parallel=True, cache=True, error_model="numpy")
def input_transform4(x, V, pad, TY, TX):  # pragma: no cover - compiled
    """V (36, C, T) = B^T d B for every 6x6 input tile d of x (C, H, W, N), F(4,3).

    Per channel: a copy with its zero border, then per tile a column pass into a small
    buffer r (6, 6, N) and a row pass from r into V.
    """
    C, H, W, N = x.shape
    Hp, Wp = 4 * TY + 2, 4 * TX + 2
    for c in prange(C):
        xp = np.zeros((Hp, Wp, N), x.dtype)
        r = np.empty((6, 6, N), x.dtype)
        for h in range(H):
            for w in range(W):
                for n in range(N):
                    xp[h + pad, w + pad, n] = x[c, h, w, n]
        for ty in range(TY):
            for tx in range(TX):
                h0, w0 = 4 * ty, 4 * tx
                t0 = (ty * TX + tx) * N
                for j in range(6):
                    w = w0 + j
                    for n in range(N):
                        v = _bt6(
                            xp[h0, w, n],
                            xp[h0 + 1, w, n],
                            xp[h0 + 2, w, n],
                            xp[h0 + 3, w, n],
                            xp[h0 + 4, w, n],
                            xp[h0 + 5, w, n],
                        )
                        r[0, j, n], r[1, j, n], r[2, j, n] = v[0], v[1], v[2]
                        r[3, j, n], r[4, j, n], r[5, j, n] = v[3], v[4], v[5]
                for i in range(6):
                    k = 6 * i
                    for n in range(N):
                        v = _bt6(
                            r[i, 0, n], r[i, 1, n], r[i, 2, n], r[i, 3, n], r[i, 4, n], r[i, 5, n]
                        )
                        t = t0 + n
                        V[k, c, t], V[k + 1, c, t], V[k + 2, c, t] = v[0], v[1], v[2]
                        V[k + 3, c, t], V[k + 4, c, t], V[k + 5, c, t] = v[3], v[4], v[5]


@njit(parallel=True, cache=True, error_model="numpy")
def output_transform4(M, out, b, TY, TX):  # pragma: no cover - compiled
    """out (F, H', W', N) = A^T m A + b for every tile m of M (36, F, T), F(4,3), cropped
    to H' x W' (a per-channel buffer holds the whole tiles)."""
    F, Ho, Wo, N = out.shape
    for f in prange(F):
        s = np.empty((4, 6, N), out.dtype)
        full = np.empty((4 * TY, 4 * TX, N), out.dtype)
        bf = b[f]
        for ty in range(TY):
            for tx in range(TX):
                t0 = (ty * TX + tx) * N
                for k in range(6):  # columns: s[:, k] = A^T M[:, k]
                    for n in range(N):
                        t = t0 + n
                        v = _at4(
                            M[k, f, t],
                            M[6 + k, f, t],
                            M[12 + k, f, t],
                            M[18 + k, f, t],
                            M[24 + k, f, t],
                            M[30 + k, f, t],
                        )
                        s[0, k, n], s[1, k, n], s[2, k, n], s[3, k, n] = v[0], v[1], v[2], v[3]
                h0, w0 = 4 * ty, 4 * tx
                for i in range(4):  # rows: Y[i] = A^T s[i] + b
                    h = h0 + i
                    for n in range(N):
                        v = _at4(
                            s[i, 0, n], s[i, 1, n], s[i, 2, n], s[i, 3, n], s[i, 4, n], s[i, 5, n]
                        )
                        full[h, w0, n] = v[0] + bf
                        full[h, w0 + 1, n] = v[1] + bf
                        full[h, w0 + 2, n] = v[2] + bf
                        full[h, w0 + 3, n] = v[3] + bf
        for h in range(Ho):
            for w in range(Wo):
                for n in range(N):
                    out[f, h, w, n] = full[h, w, n]


@njit(parallel=True, cache=True, error_model="numpy")
def dout_transform4(dout, dM, db, TY, TX):  # pragma: no cover - compiled
    """dM (36, F, T) = A g A^T for every 4x4 tile g of dout (F, H', W', N) (zero past the
    edge): the adjoint of output_transform4; db (F,) = dout's sums over (H', W', N)."""
    F, Ho, Wo, N = dout.shape
    for f in prange(F):
        g = np.zeros((4 * TY, 4 * TX, N), dout.dtype)
        p = np.empty((6, 4, N), dout.dtype)
        acc = np.zeros(N)  # float64 sums per batch index: a vectorised, fixed order
        for h in range(Ho):
            for w in range(Wo):
                for n in range(N):
                    v = dout[f, h, w, n]
                    g[h, w, n] = v
                    acc[n] += v
        db[f] = acc.sum()
        for ty in range(TY):
            for tx in range(TX):
                h0, w0 = 4 * ty, 4 * tx
                t0 = (ty * TX + tx) * N
                for j in range(4):  # columns: p[:, j] = A g[:, j]
                    w = w0 + j
                    for n in range(N):
                        v = _a6(g[h0, w, n], g[h0 + 1, w, n], g[h0 + 2, w, n], g[h0 + 3, w, n])
                        p[0, j, n], p[1, j, n], p[2, j, n] = v[0], v[1], v[2]
                        p[3, j, n], p[4, j, n], p[5, j, n] = v[3], v[4], v[5]
                for k in range(6):  # rows: dM[k] = A p[k]
                    q = 6 * k
                    for n in range(N):
                        v = _a6(p[k, 0, n], p[k, 1, n], p[k, 2, n], p[k, 3, n])
                        t = t0 + n
                        dM[q, f, t], dM[q + 1, f, t], dM[q + 2, f, t] = v[0], v[1], v[2]
                        dM[q + 3, f, t], dM[q + 4, f, t], dM[q + 5, f, t] = v[3], v[4], v[5]


@njit(parallel=True, cache=True, error_model="numpy")
def input_grad4(dV, dx, pad, TY, TX):  # pragma: no cover - compiled
    """dx (C, H, W, N) = the adjoint of input_transform4 applied to dV (36, C, T): per
    tile B dV B^T, added into a per-channel buffer over the overlapping tiles."""
    C, H, W, N = dx.shape
    Hp, Wp = 4 * TY + 2, 4 * TX + 2
    for c in prange(C):
        dp = np.zeros((Hp, Wp, N), dx.dtype)
        r = np.empty((6, 6, N), dx.dtype)
        for ty in range(TY):
            for tx in range(TX):
                h0, w0 = 4 * ty, 4 * tx
                t0 = (ty * TX + tx) * N
                for i in range(6):  # rows: r[i] = B dV[i]
                    k = 6 * i
                    for n in range(N):
                        t = t0 + n
                        v = _b6(
                            dV[k, c, t],
                            dV[k + 1, c, t],
                            dV[k + 2, c, t],
                            dV[k + 3, c, t],
                            dV[k + 4, c, t],
                            dV[k + 5, c, t],
                        )
                        r[i, 0, n], r[i, 1, n], r[i, 2, n] = v[0], v[1], v[2]
                        r[i, 3, n], r[i, 4, n], r[i, 5, n] = v[3], v[4], v[5]
                for j in range(6):  # columns: dp[:, j] += B r[:, j]
                    w = w0 + j
                    for n in range(N):
                        v = _b6(
                            r[0, j, n], r[1, j, n], r[2, j, n], r[3, j, n], r[4, j, n], r[5, j, n]
                        )
                        dp[h0, w, n] += v[0]
                        dp[h0 + 1, w, n] += v[1]
                        dp[h0 + 2, w, n] += v[2]
                        dp[h0 + 3, w, n] += v[3]
                        dp[h0 + 4, w, n] += v[4]
                        dp[h0 + 5, w, n] += v[5]
        for h in range(H):
            for w in range(W):
                for n in range(N):
                    dx[c, h, w, n] = dp[h + pad, w + pad, n]
