"""Fused passes after a convolution: [max pool] - [batch norm] - [activation] - [max pool].

What it computes: exactly the composition of :func:`nndl.conv_layers.spatial_batchnorm_forward`,
an activation (ReLU or GELU, :mod:`nndl.layers`) and
:func:`nndl.conv_layers.max_pool_forward_naive` (and their backward passes) in either
order that networks use: ``conv - BN - act - pool`` (the CS231n sandwiches, ResNets) or
``conv - pool - BN - act`` (airbench). Pools may use ``pool_param['floor']`` (PyTorch's
default mode: rows and columns past the last whole window are left out). The tests prove
it against the naive layers.

Why it is fast: the conv output is a (C, H, W, N) buffer (:mod:`nndl.fast_layers`), so a
channel's values are one contiguous slab. Every stage runs on one slab (or block of
channels) at a time, while it is still in the core's cache: the per-channel mean and
variance, the normalisation, the affine step, the activation and the pool read memory
about once instead of once per NumPy call. Batch norm normalises in place in the buffer
it is given (the conv output, or the pooled array), which becomes the cached ``xhat``:
no second full-size array. Per-channel sums lie inside one block, so results do not
depend on the thread count.

Two implementations of the same passes:

* compiled (:mod:`nndl.kernels.numba_fused`, with numba installed: the ``fast`` extra; called
  by :mod:`nndl.kernels.fused_compiled`), one channel at a time on nndl's threads. The
  activation's derivative is recomputed from ``xhat`` in the backward pass, so the
  cache holds ``xhat``, the pool's window index (uint8) and the batch statistics, not
  the output. float32 GELU uses a vectorisable tanh (see that module): within 2e-6 of
  NumPy's float32 GELU.
* NumPy (:mod:`nndl.kernels.fused_numpy`: the reference and the fallback), on blocks of
  channels on :mod:`nndl.kernels.parallel`'s threads; with ``BN - ReLU - pool`` the ReLU runs
  after the pool on a quarter of the data (max and ReLU commute exactly, gradients
  included). Its cache also keeps the output (ReLU's mask) and two uint8 pool index
  arrays.

Memory per call (beyond the conv's): forward, the output and, with a pool, the index
array(s) and (``pool - BN``) the pooled array, kept as ``xhat``; per thread, one
slab- or block-sized scratch array. Backward: one full-size array for the conv's dout
(scratch, reused from call to call) and per-thread scratch.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, NamedTuple

import numpy as np

from ..backend import get_array_module
from ..functional.activation import ACTIVATIONS as ACTIVATION_REGISTRY
from ..functional.activation import gelu_backward, gelu_forward
from ..functional.norm import update_running
from ..validation import check_dout, check_float, check_mode, check_ndim, check_vector, pool_shapes
from . import parallel
from .fused_compiled import ACT_CODES, backward_compiled, forward_compiled
from .fused_numpy import backward_numpy, forward_numpy
from .layout import from_internal, is_internal, to_internal
from .scratch import scratch

ACTIVATIONS = (None, *ACTIVATION_REGISTRY)
"""The activations the fused passes run: None or a name in
:data:`nndl.functional.activation.ACTIVATIONS` (``'relu'``, ``'gelu'`` in its tanh form)."""


class Plan(NamedTuple):
    """What follows the conv: which stages, in which order."""

    bn: bool
    act: str | None
    pool: tuple[int, int, int, int, int] | None  # PH, PW, stride, H', W'
    pool_first: bool


def plan(fn: str, ac, bn: bool, act: str | None, pool_param, pool_first: bool) -> Plan:
    """Validate the activation and pool; return the plan for the (C, H, W, N) conv output."""
    if act not in ACTIVATIONS:
        raise ValueError(f"{fn}: expected activation one of {ACTIVATIONS}, got {act!r}")
    pool = None
    if pool_param is not None:
        pool = pool_shapes(fn, from_internal(ac), pool_param)
    return Plan(bn, act, pool, pool_first and pool is not None)


class _Cache(NamedTuple):
    p: Plan
    a_shape: tuple[int, ...]
    mode: str
    compiled: bool
    pre: Any  # xhat (BN, train) or the activation's input (no BN)
    pool_idx: Any  # compiled: one index array; NumPy: (idx_w, idx_h)
    out: Any  # NumPy path: the output (ReLU's mask)
    gamma: Any
    beta: Any
    inv_std: Any


def _bn_params(fn: str, C: int, gamma, beta, bn_param: MutableMapping[str, Any]):
    mode = check_mode(fn, "bn_param", bn_param)
    check_vector(fn, "gamma", gamma, C)
    check_vector(fn, "beta", beta, C)
    if mode == "test" and (
        bn_param.get("running_mean") is None or bn_param.get("running_var") is None
    ):
        raise ValueError(
            f"{fn}: bn_param has mode 'test' but no running_mean/running_var; "
            "expected at least one forward pass in mode 'train' first"
        )
    return mode, bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)


def _numba():
    """The compiled passes (:mod:`nndl.kernels.numba_fused`), loaded by
    :func:`nndl.kernels.parallel.compiled` only when numba may be used."""
    from . import numba_fused

    return numba_fused


# --- forward ------------------------------------------------------------------------------


def post_conv_forward(ac, p: Plan, fn: str, gamma=None, beta=None, bn_param=None):
    """Run the plan on the conv output ac (C, H, W, N), which it may overwrite.

    Returns ``out`` (C, H', W', N) and the cache for :func:`post_conv_backward`.
    """
    xp = get_array_module(ac)
    C = ac.shape[0]
    mode, eps, momentum, g, be = "train", 0.0, 0.0, None, None
    if p.bn:
        mode, eps, momentum = _bn_params(fn, C, gamma, beta, bn_param)
        g = gamma.astype(ac.dtype, copy=False)
        be = beta.astype(ac.dtype, copy=False)
    stats = xp.empty((3, C), dtype=ac.dtype)
    if p.bn and mode == "test":  # shift and scale of the naive layer's test-mode formula
        stats[0] = bn_param["running_mean"]
        stats[2] = g / xp.sqrt(bn_param["running_var"] + eps)
    if not (p.bn or p.act or p.pool):
        return ac, _Cache(p, ac.shape, mode, False, ac, None, ac, None, None, None)
    kernels = parallel.compiled(ac, _numba)
    run = forward_compiled if kernels is not None else forward_numpy
    out, pre, idx, keep_out = run(kernels, ac, p, mode, g, be, eps, stats)
    if p.bn and mode == "train":
        update_running(bn_param, stats[0], stats[1], momentum)
    inv_std = stats[2] if p.bn and mode == "train" else None
    cache = _Cache(p, ac.shape, mode, kernels is not None, pre, idx,
                   out if keep_out else None, g, be, inv_std)  # fmt: skip
    return out, cache


# --- backward -----------------------------------------------------------------------------


def post_conv_backward(dc, cache: _Cache, fn: str, fresh: bool = False):
    """Backward of :func:`post_conv_forward`: dc (C, H', W', N) -> the conv output's
    gradient (C, H, W, N), dgamma, dbeta (None without BN). The gradient is a reused
    scratch buffer (for the conv's backward to consume at once) unless ``fresh``."""
    p = cache.p
    if p.bn and cache.mode != "train":
        raise ValueError(f"{fn}: expected a cache from a 'train' mode forward, got a test-mode one")
    if not (p.bn or p.act or p.pool):
        return dc, None, None
    xp = get_array_module(dc)
    C = cache.a_shape[0]
    if fresh:
        da = xp.empty(cache.a_shape, dtype=dc.dtype)
    else:
        da = scratch(xp, "fused_dconv", cache.a_shape, dc.dtype)
    grads = xp.empty((2, C), dtype=dc.dtype)
    if cache.compiled:
        backward_compiled(parallel.compiled(dc, _numba), dc, cache, da, grads)
    else:
        backward_numpy(dc, cache, da, grads)
    if not p.bn:
        return da, None, None
    return da, grads[0], grads[1]


# --- the same passes as standalone layers ---------------------------------------------------


def spatial_batchnorm_forward_fast(x, gamma, beta, bn_param: MutableMapping[str, Any]):
    """Fast :func:`nndl.conv_layers.spatial_batchnorm_forward` (same arguments and results).

    x (N, C, H, W) -> out (N, C, H, W), a view of a (C, H, W, N) buffer (see
    :mod:`nndl.fast_layers`); an input stored that way costs no transposing copy. x is
    not modified (one copy of it becomes the cached ``xhat``).
    """
    fn = "spatial_batchnorm_forward_fast"
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    check_float(fn, "x", x)
    xc = x.transpose(1, 2, 3, 0)
    # Our own (C, H, W, N) copy: batch norm normalises it in place into xhat.
    ac = xc.copy() if xc.flags.c_contiguous else get_array_module(x).ascontiguousarray(xc)
    p = Plan(True, None, None, False)
    out, cache = post_conv_forward(ac, p, fn, gamma, beta, bn_param)
    return from_internal(out), cache


def spatial_batchnorm_backward_fast(dout, cache):
    """Gradients of :func:`spatial_batchnorm_forward_fast`: dx (N, C, H, W) (a view of a
    (C, H, W, N) buffer), dgamma, dbeta (C,)."""
    fn = "spatial_batchnorm_backward_fast"
    check_ndim(fn, "dout", dout, 4, "(N, C, H, W)")
    C, H, W, N = cache.a_shape
    check_dout(fn, dout, (N, C, H, W))
    dx, dgamma, dbeta = post_conv_backward(to_internal(dout), cache, fn, fresh=True)
    return from_internal(dx), dgamma, dbeta


def _flat(a):
    """a's elements as a flat view in memory order (C-contiguous or a (C, H, W, N)
    buffer seen as (N, C, H, W)), or None."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if a.ndim == 4 and is_internal(a):
        return a.transpose(1, 2, 3, 0).reshape(-1)
    return None


def gelu_forward_fast(x):
    """Fast :func:`nndl.layers.gelu_forward` (tanh form): any shape, same memory layout.

    With the compiled kernels, one threaded pass and a cache of x alone (the backward
    pass recomputes tanh); float32 within 2e-6 of the NumPy form. Otherwise
    :func:`nndl.layers.gelu_forward`.
    """
    check_float("gelu_forward_fast", "x", x)
    kernels = parallel.compiled(x, _numba)
    flat = _flat(x) if kernels is not None else None
    if flat is None:
        out, cache = gelu_forward(x)
        return out, ("numpy", cache)
    out = np.empty_like(x)  # same memory order as x
    blocks = -(-flat.size // kernels.ACT_BLOCK)
    parallel.run_compiled(kernels.activation_forward, blocks, flat, ACT_CODES["gelu"], _flat(out))
    return out, ("compiled", x)


def gelu_backward_fast(dout, cache):
    """Gradient of :func:`gelu_forward_fast`; dx has the shape and layout of dout."""
    kind, inner = cache
    if kind == "numpy":
        return gelu_backward(dout, inner)
    x = inner
    check_dout("gelu_backward_fast", dout, x.shape)
    kernels = parallel.compiled(x, _numba)
    dx = np.empty_like(x)
    d = dout if _flat(dout) is not None and dout.strides == x.strides else None
    if d is None:  # lay dout out as x is
        d = np.empty_like(x)
        d[...] = dout
    blocks = -(-x.size // kernels.ACT_BLOCK)
    parallel.run_compiled(
        kernels.activation_backward, blocks, _flat(d), _flat(x), ACT_CODES["gelu"], _flat(dx)
    )
    return dx


__all__ = [
    "ACTIVATIONS",
    "Plan",
    "gelu_backward_fast",
    "gelu_forward_fast",
    "plan",
    "post_conv_backward",
    "post_conv_forward",
    "spatial_batchnorm_backward_fast",
    "spatial_batchnorm_forward_fast",
]
