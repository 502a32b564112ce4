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
over blocks of channels, run on :mod:`nndl.kernels.parallel`'s threads; the products are BLAS.
The backward pass is three more batched GEMMs' worth of the same shape
(``dU = dM @ V^T``, ``dV = U^T @ dM``) around the transposed transforms.

Layout: channels first, batch last. Inputs and outputs are (C, H, W, N) arrays: a GEMM
over (channels x pixels) reads and writes them without a transposed copy, and every
strided slice along H or W keeps whole contiguous runs of N (NumPy's loops stay long
where an (N, C, H, W) layout would leave runs of a few pixels).

The matrices and the NumPy transforms are in :mod:`nndl.kernels.winograd_transforms`; this
module is the layer (forward, backward, and the choice of path).

Compiled path (:mod:`nndl.kernels.winograd_compiled`): with numba installed (the optional
``fast`` extra), F(4x4,3x3) runs on compiled kernels (:mod:`nndl.kernels.numba_winograd`) that do
each transform tile by tile in one pass (several times faster than the NumPy transforms,
which stay the reference: the tests compare the two, and the fallback; F(2x2,3x3)
always uses them). The layer goes through its tiles in chunks of about
:data:`CHUNK_BYTES` of transformed data: transform, the 36 GEMMs, transform back, chunk
by chunk, so the products never exist in full.
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
  :data:`nndl.kernels.parallel.BLOCK_BYTES`.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import parallel
from .scratch import scratch
from .winograd_compiled import backward4, forward4
from .winograd_transforms import (
    dout_transform,
    filter_grad,
    filter_transform,
    geometry,
    input_grad,
    input_transform,
    output_transform,
)


def applies(w_shape, stride: int) -> bool:
    """Whether a convolution with filters of ``w_shape`` and ``stride`` can use Winograd."""
    return tuple(w_shape[2:]) == (3, 3) and stride == 1


# --- optional compiled kernels ---------------------------------------------------------


def compiled_available() -> bool:
    """Whether the numba kernels can be used (installed and not disabled)."""
    return compiled_kernels(np.empty(0, np.float32)) is not None


def compiled_kernels(a):
    """The numba kernels (:mod:`nndl.kernels.numba_winograd`) for the NumPy array a, or None when
    numba is missing, ``NNDL_NUMBA=0`` is set, or a is not float32/float64 NumPy."""
    return parallel.compiled(a, _numba)


def _numba():
    """The compiled F(4x4,3x3) kernels, loaded by :func:`nndl.kernels.parallel.compiled`
    only when numba may be used."""
    from . import numba_winograd

    return numba_winograd


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
        return forward4(k, np.ascontiguousarray(x), w, b, g, recompute)
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
        return backward4(k, np.ascontiguousarray(dout), cache, need_dx)
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
    (pooled, ix), cache = forward4(k, np.ascontiguousarray(x), w, b, g, recompute, pool=True)
    return pooled, ix, cache


def winograd_pool_backward(dp, ix, cache, need_dx: bool = True):
    """Gradients of :func:`winograd_pool_forward` from the pooled gradient dp
    (F, H'', W'', N): dx (C, H, W, N) or None, dw, db."""
    k = compiled_kernels(dp)
    if k is None:
        raise RuntimeError("winograd_pool_backward: needs the compiled kernels (numba)")
    return backward4(k, np.ascontiguousarray(dp), cache, need_dx, ix)


__all__ = [
    "applies",
    "pool_fusable",
    "winograd_backward",
    "winograd_forward",
    "winograd_pool_backward",
    "winograd_pool_forward",
]
