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


__all__ = ["input_transform", "output_transform", "dout_transform", "input_grad"]
