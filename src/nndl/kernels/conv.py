"""Fast convolution and max pooling: BLAS matrix products plus threaded NumPy passes.

Same signatures and results as the naive layers in :mod:`nndl.conv_layers` (the tests
prove it); only the caches and the memory layout of the returned arrays differ.

**Layout.** Internally every activation is stored channels first, batch last: a
(C, H, W, N) buffer, returned as an (N, C, H, W) *view*, which the next fast layer reads
with no copy (:mod:`nndl.kernels.layout` says why).

**Convolution.** ``conv_param`` keys besides ``stride`` and ``pad`` (all optional):

* ``'algorithm'``: ``'auto'`` (default), ``'im2col'``, ``'winograd2'`` or
  ``'winograd4'``. For 3x3 stride-1 filters with at least
  :data:`WINOGRAD_MIN_CHANNELS` input channels, auto uses Winograd (:mod:`nndl.kernels.winograd`,
  batched GEMMs): F(4x4,3x3) (1/4 of the multiplications) when the optional numba
  kernels are installed (``pip install nndl[fast]``), else F(2x2,3x3) (4/9), whose
  NumPy transforms are cheaper; im2col (:mod:`nndl.kernels.im2col`: one GEMM per chunk)
  otherwise. Measured per layer (1 thread, batch 128-256, 4x4 to 32x32 maps, 24-256
  channels): F(4x4,3x3) with numba was 1.1-2.5x faster than im2col everywhere,
  F(2x2,3x3) with NumPy 1.0-1.8x.
* ``'input_grad'`` (bool, default True): False makes the backward pass skip dx and
  return ``None`` in its place: a network's first layer never needs it, and it is a
  third of that layer's backward work.
* ``'recompute'`` (bool, default False): the cache keeps x instead of the columns (or
  the Winograd-transformed input) and the backward pass rebuilds them.
* ``'col_buffer_bytes'`` (int, default :data:`COL_BUFFER_BYTES`): im2col works through
  the output rows in chunks whose column buffer holds at most this many bytes (at least
  one output row). A problem that needs more than one chunk always recomputes.

**Max pooling** (:mod:`nndl.kernels.max_pool`): separable running maxima of strided slices.

**Memory** (extra, per call; ``B = max(col_buffer_bytes, one output row's columns)``):
im2col forward, one column buffer (<= B, kept in the cache when the problem is one
chunk and not ``recompute``) and the output; backward, one column-gradient buffer
(<= B, scratch). Winograd: see :mod:`nndl.kernels.winograd` (the cache keeps the transformed
input, 4x x's size for F(2x2,3x3), 2.25x for F(4x4,3x3), or x with ``recompute``).
Max pool: the cache holds two uint8 index arrays (x's size / stride and the output's
size), a scratch buffer of x's size / stride for the intermediate.

Temporaries live in per-thread scratch buffers reused from call to call
(:mod:`nndl.kernels.scratch`); :func:`free_scratch` releases them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import check_bool, check_dout, check_ndim, conv_options, conv_shapes, pool_shapes
from . import winograd
from .im2col import im2col_backward, im2col_forward, sum_rows
from .layout import from_internal, to_internal
from .max_pool import max_pool_backward_fast, max_pool_forward_fast

COL_BUFFER_BYTES = 16 * 2**20
"""Default upper bound in bytes of one column buffer; see ``conv_param['col_buffer_bytes']``."""

WINOGRAD_MIN_CHANNELS = 16
"""Fewest input channels for which 'auto' picks Winograd: below it the transformed GEMMs
(inner dimension C) are too thin to beat im2col's single GEMM over C*9."""

ALGORITHMS = ("auto", "im2col", "winograd2", "winograd4")

# --- convolution options ----------------------------------------------------------------


def _algorithm(fn: str, conv_param: Mapping[str, Any], w_shape, stride: int) -> str:
    algo = conv_param.get("algorithm", "auto")
    if algo not in ALGORITHMS:
        raise ValueError(f"{fn}: conv_param['algorithm'] must be one of {ALGORITHMS}, got {algo!r}")
    if algo.startswith("winograd") and not winograd.applies(w_shape, stride):
        raise ValueError(
            f"{fn}: conv_param['algorithm'] {algo!r} needs 3x3 filters and stride 1, got "
            f"filters {tuple(w_shape[2:])} and stride {stride}"
        )
    if algo == "auto":
        ok = winograd.applies(w_shape, stride) and w_shape[1] >= WINOGRAD_MIN_CHANNELS
        algo = "im2col" if not ok else "winograd4" if winograd.compiled_available() else "winograd2"
    return algo


def _input_grad(fn: str, conv_param: Mapping[str, Any]) -> bool:
    return check_bool(fn, "conv_param['input_grad']", conv_param.get("input_grad", True))


# --- convolution ------------------------------------------------------------------------


def conv_forward_fast(x, w, b, conv_param: Mapping[str, Any]):
    """Fast :func:`nndl.conv_layers.conv_forward_naive` (same shapes and results).

    Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W'), in x's dtype,
    a view of a (F, H', W', N) buffer (see the module docstring). ``conv_param`` takes
    ``stride`` and ``pad`` and, optionally, ``algorithm``, ``input_grad``, ``recompute``
    and ``col_buffer_bytes`` (module docstring).
    """
    fn = "conv_forward_fast"
    stride, pad, H_out, W_out = conv_shapes(fn, x, w, b, conv_param)
    recompute, budget = conv_options(fn, conv_param, COL_BUFFER_BYTES)
    algo = _algorithm(fn, conv_param, w.shape, stride)
    need_dx = _input_grad(fn, conv_param)
    xc = to_internal(x)
    geometry = (xc.shape, stride, pad, H_out, W_out)
    if algo == "im2col" or x.shape[0] == 0:
        out, inner = im2col_forward(xc, w, b, stride, pad, H_out, W_out, recompute, budget)
    else:
        m = int(algo[-1])
        out, wcache = winograd.winograd_forward(xc, w, b, pad, m, recompute)
        inner = ("winograd", wcache)
    return from_internal(out), (inner, geometry, need_dx, w.shape)


def conv_backward_fast(dout, cache, input_grad: bool = True):
    """Fast :func:`nndl.conv_layers.conv_backward_naive`: dout (N, F, H', W') -> dx, dw, db.

    dx (N, C, H, W) (a view of a (C, H, W, N) buffer; ``None`` when the forward's
    ``conv_param['input_grad']`` or ``input_grad`` here is False), dw (F, C, HH, WW), db (F,).
    """
    fn = "conv_backward_fast"
    inner, geometry, need_dx, w_shape = cache
    need_dx = need_dx and bool(input_grad)
    check_ndim(fn, "dout", dout, 4, "(N, F, H', W')")
    (C, H, W, N), _, _, H_out, W_out = geometry
    check_dout(fn, dout, (N, w_shape[0], H_out, W_out))
    xp = get_array_module(dout)
    dc = to_internal(dout)
    if inner[0] == "winograd":
        dx, dw, db = winograd.winograd_backward(dc, inner[1], need_dx)
    else:
        dx, dw = im2col_backward(dc, inner, geometry, need_dx)
        db = xp.empty(w_shape[0], dtype=dout.dtype)
        sum_rows(dc, db)
    return (None if dx is None else from_internal(dx)), dw, db


def conv_bias_backward(dout):
    """db (F,) of the fast conv alone, from dout (N, F, H', W'): for a layer whose filters
    and input need no gradient (a frozen filter bank with a trained bias), the bias sum
    :func:`conv_backward_fast` takes on its im2col path, without the filter gradient."""
    check_ndim("conv_bias_backward", "dout", dout, 4, "(N, F, H', W')")
    db = get_array_module(dout).empty(dout.shape[1], dtype=dout.dtype)
    sum_rows(to_internal(dout), db)
    return db


# --- convolution then max pool -----------------------------------------------------------


def _conv_pool_fused(x, w, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]) -> bool:
    """Whether conv_pool_forward_fast runs fused: a compiled F(4x4,3x3) conv and a 2x2
    stride-2 pool (the shapes are checked by the caller)."""
    stride = conv_param.get("stride")
    if stride != 1 or tuple(w.shape[2:]) != (3, 3):
        return False
    if _algorithm("conv_pool_forward_fast", conv_param, w.shape, 1) != "winograd4":
        return False
    p = (pool_param.get("pool_height"), pool_param.get("pool_width"), pool_param.get("stride"))
    return p == (2, 2, 2) and winograd.pool_fusable(x) and x.shape[0] > 0


def conv_pool_forward_fast(x, w, b, conv_param: Mapping[str, Any], pool_param: Mapping[str, Any]):
    """:func:`conv_forward_fast` then :func:`max_pool_forward_fast` (same results as the
    naive layers composed): x (N, C, H, W) -> out (N, F, H'', W'').

    With the compiled kernels, a 3x3 stride-1 Winograd F(4x4,3x3) conv and a 2x2 stride-2
    pool (floor mode allowed) run fused: each 4x4 output tile is pooled as it is made, so
    the conv output (4x the pooled size) is never stored, and the backward pass routes
    the pooled gradient into the tiles directly. Otherwise the two layers run in turn.
    """
    fn = "conv_pool_forward_fast"
    stride, pad, H_out, W_out = conv_shapes(fn, x, w, b, conv_param)
    pool_shapes(fn, np.broadcast_to(np.zeros((), x.dtype), (1, 1, H_out, W_out)), pool_param)
    if not _conv_pool_fused(x, w, conv_param, pool_param):
        a, conv_cache = conv_forward_fast(x, w, b, conv_param)
        out, pool_cache = max_pool_forward_fast(a, pool_param)
        return out, ("composed", conv_cache, pool_cache)
    recompute, _ = conv_options(fn, conv_param, COL_BUFFER_BYTES)
    need_dx = _input_grad(fn, conv_param)
    pooled, ix, wcache = winograd.winograd_pool_forward(to_internal(x), w, b, pad, recompute)
    return from_internal(pooled), ("fused", wcache, ix, need_dx)


def conv_pool_backward_fast(dout, cache, input_grad: bool = True):
    """Gradients of :func:`conv_pool_forward_fast`: dout (N, F, H'', W'') -> dx (or None,
    as :func:`conv_backward_fast`), dw, db."""
    fn = "conv_pool_backward_fast"
    if cache[0] == "composed":
        _, conv_cache, pool_cache = cache
        da = max_pool_backward_fast(dout, pool_cache)
        return conv_backward_fast(da, conv_cache, input_grad)
    _, wcache, ix, need_dx = cache
    check_ndim(fn, "dout", dout, 4, "(N, F, H'', W'')")
    check_dout(fn, dout, tuple(ix.shape[i] for i in (3, 0, 1, 2)))
    dx, dw, db = winograd.winograd_pool_backward(
        to_internal(dout), ix, wcache, need_dx and bool(input_grad)
    )
    return (None if dx is None else from_internal(dx)), dw, db


__all__ = [
    "ALGORITHMS",
    "COL_BUFFER_BYTES",
    "WINOGRAD_MIN_CHANNELS",
    "conv_backward_fast",
    "conv_bias_backward",
    "conv_forward_fast",
    "conv_pool_backward_fast",
    "conv_pool_forward_fast",
]
