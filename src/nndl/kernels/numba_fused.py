"""Optional compiled kernels (numba) for the fused passes after a convolution.

:mod:`nndl.kernels.fused` calls these when numba is installed (the ``fast`` extra); its NumPy
block code is the reference they are tested against and the fallback. Each kernel does
one channel at a time: the channel's slab of a (C, H, W, N) array is contiguous, so
every pass over it is one long vectorised loop, and the slab (at most a few MB) is still
in the core's cache for the next pass. A kernel does the channels (or chunks of
channels, or blocks) ``[c0, c1)`` given as its last two arguments without the GIL
(``nogil``); :func:`nndl.kernels.parallel.run_compiled` hands each of nndl's threads one range
(serial kernels compile in a third of the time of numba's ``prange`` loops; see
:mod:`nndl.kernels.numba_winograd`). Per channel:

* forward: [max pool] -> batch norm statistics (mean, then the variance about it, both
  accumulated in float64), normalisation in place (the slab becomes ``xhat``, the
  cache), ``y = gamma * xhat + beta``, the activation, [max pool]; one pass over the
  conv output and two or three over the (pooled) slab.
* backward: [pool scatter] -> the activation's derivative, recomputed from ``xhat``
  (nothing else is cached: no output, no tanh) -> the sums for dgamma and dbeta -> the
  batch-norm gradient -> [pool scatter].

A channel's work, including its sums, runs on one thread in a fixed order, so results
do not depend on the thread count.

Activations: 0 none, 1 ReLU, 2 GELU (tanh form, as :func:`nndl.layers.gelu_forward`,
with the same order of operations). numba's ``math.tanh`` is a scalar libm call (the
pip build of llvmlite has no SVML), about 25 ns an element, so float32 uses a rational
approximation of tanh that vectorises (the minimax fit Eigen uses for float tanh,
``generic_fast_tanh_float``: odd degree 13 over even degree 6, clamped at
|u| = 7.9053, within a few float32 ulps of tanh); float64 keeps ``math.tanh``, so the
float64 tests compare against NumPy to rounding.

Importing this module raises ImportError without numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..functional.activation import ACTIVATIONS

# The codes of the one activation registry (numba reads these globals as constants).
NONE, RELU, GELU = 0, ACTIVATIONS["relu"].code, ACTIVATIONS["gelu"].code
ACT_BLOCK = 1 << 16
"""Elements per block of the standalone activation kernels (one block per call range)."""
_K = math.sqrt(2.0 / math.pi)
_A = 0.044715
_OPTS = {"cache": True, "error_model": "numpy"}
# Reassociation lets LLVM vectorise the float64 sums (several partial sums); the order is
# fixed by the compiled code, so results still do not depend on threads or timing.
_FAST = {"reassoc", "contract"}


# --- activations, specialised per float type ----------------------------------------------


def _tanh(u):  # pragma: no cover - replaced by the overload in compiled code
    return math.tanh(u)


@overload(_tanh, **{"jit_options": {"error_model": "numpy"}})
def _tanh_overload(u):
    if isinstance(u, types.Float) and u.bitwidth == 32:
        f = np.float32
        clamp, tiny = f(7.90531110763549805), f(0.0004)
        a1, a3, a5 = f(4.89352455891786e-03), f(6.37261928875436e-04), f(1.48572235717979e-05)
        a7, a9 = f(5.12229709037114e-08), f(-8.60467152213735e-11)
        a11, a13 = f(2.00018790482477e-13), f(-2.76076847742355e-16)
        b0, b2 = f(4.89352518554385e-03), f(2.26843463243900e-03)
        b4, b6 = f(1.18534705686654e-04), f(1.19825839466702e-06)

        def tanh32(u):
            x = min(max(u, -clamp), clamp)
            x2 = x * x
            p = ((((((a13 * x2 + a11) * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3) * x2 + a1) * x
            q = ((b6 * x2 + b4) * x2 + b2) * x2 + b0
            return u if abs(u) < tiny else p / q

        return tanh32
    return lambda u: math.tanh(u)


def _consts(y):  # pragma: no cover - replaced by the overload in compiled code
    return _K, _A, 3 * _A * _K, 0.0, 1.0, 0.5


@overload(_consts)
def _consts_overload(y):
    """GELU's constants, 0, 1 and 1/2 in y's float type (a float64 literal would promote
    float32 arithmetic to float64)."""
    f = np.float32 if isinstance(y, types.Float) and y.bitwidth == 32 else float
    k, a, c, zero, one, half = (f(v) for v in (_K, _A, 3 * _A * _K, 0.0, 1.0, 0.5))
    return lambda y: (k, a, c, zero, one, half)


@njit(inline="always", **_OPTS)
def _act(y, act):
    """The activation of y (same order of operations as nndl.layers)."""
    k, a, _, zero, one, half = _consts(y)
    if act == RELU:
        return y if y > zero else zero
    if act == GELU:
        t = _tanh((y * y * a + one) * y * k)
        return (t + one) * y * half
    return y


@njit(inline="always", **_OPTS)
def _act_grad(y, d, act):
    """d * act'(y), the derivative recomputed from y."""
    k, a, c, zero, one, half = _consts(y)
    if act == RELU:
        return d if y > zero else zero
    if act == GELU:
        t = _tanh((y * y * a + one) * y * k)
        du = y * y * c + k
        return (((one - t * t) * du * y + t + one) * half) * d
    return d


# --- per-channel passes on flat slabs ------------------------------------------------------


@njit(fastmath=_FAST, **_OPTS)
def _mean_var(z):
    """Mean and variance about it (float64 sums) of the flat slab z."""
    s = 0.0
    for i in range(z.size):
        s += z[i]
    t = z.dtype.type
    mu = t(s / max(z.size, 1))
    q = 0.0
    for i in range(z.size):
        d = z[i] - mu
        q += d * d
    return mu, t(q / max(z.size, 1))


@njit(**_OPTS)
def _normalize_act(z, o, c, bn, train, g, b, eps, stats, act):
    """Channel c: [batch norm] and the activation of z into o; in train mode z becomes
    xhat and stats[:, c] the mean, variance and 1 / sqrt(var + eps). In test mode
    stats[0, c] is the running mean and stats[2, c] gamma / sqrt(running_var + eps).

    The activation is chosen here, outside the loops: each branch inlines the loops
    with a constant ``act``, which LLVM vectorises. With ``act`` a run-time value inside
    a loop, a serial kernel ran 1.4-2.3x slower (numba's ``prange`` bodies hid that: their
    arrays are marked as not aliasing each other). Compiled once per float type and
    called by the three forward kernels (inlined into each, they took twice as long to
    compile)."""
    if act == RELU:
        _normalize_as(z, o, c, bn, train, g, b, eps, stats, RELU)
    elif act == GELU:
        _normalize_as(z, o, c, bn, train, g, b, eps, stats, GELU)
    else:
        _normalize_as(z, o, c, bn, train, g, b, eps, stats, NONE)


@njit(inline="always", **_OPTS)
def _normalize_as(z, o, c, bn, train, g, b, eps, stats, act):
    """:func:`_normalize_act` for one activation ``act`` (a constant where inlined)."""
    if not bn:
        for i in range(z.size):
            o[i] = _act(z[i], act)
        return
    if train:
        mu, var = _mean_var(z)
        stats[0, c] = mu
        stats[1, c] = var
        stats[2, c] = 1.0 / math.sqrt(var + eps)
        r = stats[2, c]
        gc, bc = g[c], b[c]
        for i in range(z.size):
            xh = (z[i] - mu) * r
            z[i] = xh
            o[i] = _act(xh * gc + bc, act)
    else:
        shift, scale, bc = stats[0, c], stats[2, c], b[c]
        for i in range(z.size):
            o[i] = _act((z[i] - shift) * scale + bc, act)


@njit(fastmath=_FAST, **_OPTS)
def _act_bn_backward(d, xhat, c, bn, g, b, inv_std, act, dx, grads):
    """Channel c, flat slabs: dx = the gradient at the batch norm's input (or at the
    activation's input without batch norm) from d at the activation's output; dx may be
    d itself. grads[:, c] receives dgamma and dbeta."""
    if not bn:
        for i in range(d.size):
            dx[i] = _act_grad(xhat[i], d[i], act)
        return
    gc, bc = g[c], b[c]
    sb = 0.0
    sg = 0.0
    for i in range(d.size):
        dy = _act_grad(xhat[i] * gc + bc, d[i], act)
        dx[i] = dy
        sb += dy
        sg += dy * xhat[i]
    m = d.dtype.type(max(d.size, 1))
    grads[0, c] = sg
    grads[1, c] = sb
    dg, db = grads[0, c], grads[1, c]
    mg, mb = dg / m, db / m
    scale = gc * inv_std[c]
    for i in range(d.size):
        dx[i] = (dx[i] - (xhat[i] * mg + mb)) * scale


# --- max pool on channel slabs (H, W, N) ----------------------------------------------------


@njit(**_OPTS)
def _pool(z, o, ix, PH, PW, s):
    """Max over each window of z (H, W, N) into o (H', W', N); ix = the window offset
    (kh * PW + kw) of the first maximum in row-major order (strict >)."""
    Ho, Wo, N = o.shape
    for i in range(Ho):
        for j in range(Wo):
            dst = o[i, j]
            dix = ix[i, j]
            src = z[s * i, s * j]
            for n in range(N):
                dst[n] = src[n]
                dix[n] = 0
            for kh in range(PH):
                for kw in range(PW):
                    k = kh * PW + kw
                    if k == 0:
                        continue
                    src = z[s * i + kh, s * j + kw]
                    for n in range(N):
                        v = src[n]
                        take = v > dst[n]
                        dst[n] = v if take else dst[n]
                        dix[n] = k if take else dix[n]


@njit(**_OPTS)
def _pool_backward(d, ix, PH, PW, s, dz):
    """Route d (H', W', N) to the recorded maxima in dz (H, W, N); every other element
    of dz (other window positions, rows and columns past the last window) is zero."""
    Ho, Wo, N = d.shape
    H, W = dz.shape[:2]
    if PH == s and PW == s:  # windows tile [0, s*Ho) x [0, s*Wo) once: zero the rest only
        dz[s * Ho :] = 0
        dz[: s * Ho, s * Wo :] = 0
    else:
        dz[:] = 0
    disjoint = PH <= s and PW <= s
    for i in range(Ho):
        for j in range(Wo):
            src = d[i, j]
            six = ix[i, j]
            for kh in range(PH):
                for kw in range(PW):
                    k = kh * PW + kw
                    dst = dz[s * i + kh, s * j + kw]
                    if disjoint:
                        for n in range(N):
                            dst[n] = src[n] if six[n] == k else 0
                    else:
                        for n in range(N):
                            dst[n] += src[n] if six[n] == k else 0


# --- kernels: conv output a (C, H, W, N) ------------------------------------------------


@njit(nogil=True, **_OPTS)
def forward_plain(a, bn, train, g, b, eps, stats, act, out, c0, c1):  # pragma: no cover
    """conv - [BN] - act: a (C, H, W, N) -> out (same shape); a becomes xhat (train)."""
    for c in range(c0, c1):
        _normalize_act(a[c].ravel(), out[c].ravel(), c, bn, train, g, b, eps, stats, act)


@njit(nogil=True, **_OPTS)
def forward_pool_first(
    a, PH, PW, s, pooled, ix, bn, train, g, b, eps, stats, act, out, c0, c1
):  # pragma: no cover - compiled
    """conv - pool - [BN] - act: a -> pooled, ix (C, H', W', N); pooled becomes xhat."""
    for c in range(c0, c1):
        _pool(a[c], pooled[c], ix[c], PH, PW, s)
        _normalize_act(pooled[c].ravel(), out[c].ravel(), c, bn, train, g, b, eps, stats, act)


@njit(nogil=True, **_OPTS)
def forward_pool_last(
    a, PH, PW, s, bn, train, g, b, eps, stats, act, y, out, ix, k0, k1
):  # pragma: no cover - compiled
    """conv - [BN] - act - pool: a becomes xhat; y (chunks, H, W, N) is scratch, one
    slab per chunk of channels (chunk k does channels k, k + chunks, ...); the kernel
    does the chunks [k0, k1)."""
    C = a.shape[0]
    chunks = y.shape[0]
    for k in range(k0, k1):
        yk = y[k]
        for c in range(k, C, chunks):
            _normalize_act(a[c].ravel(), yk.ravel(), c, bn, train, g, b, eps, stats, act)
            _pool(yk, out[c], ix[c], PH, PW, s)


@njit(nogil=True, **_OPTS)
def backward_plain(d, xhat, bn, g, b, inv_std, act, da, grads, c0, c1):  # pragma: no cover
    """Backward of forward_plain: d (C, H, W, N) -> da (same shape)."""
    for c in range(c0, c1):
        _act_bn_backward(d[c].ravel(), xhat[c].ravel(), c, bn, g, b, inv_std, act,
                         da[c].ravel(), grads)  # fmt: skip


@njit(nogil=True, **_OPTS)
def backward_pool_first(
    d, xhat, ix, PH, PW, s, bn, g, b, inv_std, act, tmp, da, grads, k0, k1
):  # pragma: no cover - compiled
    """Backward of forward_pool_first: d (C, H', W', N) -> da (C, H, W, N); tmp
    (chunks, H', W', N) is scratch, one slab per chunk of channels; the kernel does the
    chunks [k0, k1)."""
    C = d.shape[0]
    chunks = tmp.shape[0]
    for k in range(k0, k1):
        t = tmp[k]
        for c in range(k, C, chunks):
            _act_bn_backward(d[c].ravel(), xhat[c].ravel(), c, bn, g, b, inv_std, act,
                             t.ravel(), grads)  # fmt: skip
            _pool_backward(t, ix[c], PH, PW, s, da[c])


@njit(nogil=True, **_OPTS)
def backward_pool_last(
    d, ix, PH, PW, s, xhat, bn, g, b, inv_std, act, da, grads, c0, c1
):  # pragma: no cover - compiled
    """Backward of forward_pool_last: d (C, H', W', N) -> da (C, H, W, N)."""
    for c in range(c0, c1):
        _pool_backward(d[c], ix[c], PH, PW, s, da[c])
        flat = da[c].ravel()
        _act_bn_backward(flat, xhat[c].ravel(), c, bn, g, b, inv_std, act, flat, grads)


@njit(nogil=True, **_OPTS)
def activation_forward(x, act, out, k0, k1):  # pragma: no cover - compiled
    """out = act(x) for flat contiguous x: the blocks [k0, k1) of ACT_BLOCK elements."""
    n = x.size
    step = ACT_BLOCK
    for k in range(k0, k1):
        for i in range(k * step, min(n, (k + 1) * step)):
            out[i] = _act(x[i], act)


@njit(nogil=True, **_OPTS)
def activation_backward(d, x, act, dx, k0, k1):  # pragma: no cover - compiled
    """dx = d * act'(x) for flat contiguous arrays: the blocks [k0, k1) of ACT_BLOCK
    elements."""
    n = x.size
    step = ACT_BLOCK
    for k in range(k0, k1):
        for i in range(k * step, min(n, (k + 1) * step)):
            dx[i] = _act_grad(x[i], d[i], act)


__all__ = [
    "ACT_BLOCK",
    "forward_plain",
    "forward_pool_first",
    "forward_pool_last",
    "backward_plain",
    "backward_pool_first",
    "backward_pool_last",
    "activation_forward",
    "activation_backward",
]
