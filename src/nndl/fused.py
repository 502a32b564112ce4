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

* compiled (:mod:`nndl._numba_fused`, with numba installed: the ``fast`` extra), one
  channel per task on numba's threads. The activation's derivative is recomputed from
  ``xhat`` in the backward pass, so the cache holds ``xhat``, the pool's window index
  (uint8) and the batch statistics, not the output. float32 GELU uses a vectorisable
  tanh (see that module): within 2e-6 of NumPy's float32 GELU.
* NumPy (the reference and the fallback), on blocks of channels on
  :mod:`nndl.parallel`'s threads; with ``BN - ReLU - pool`` the ReLU runs after the pool
  on a quarter of the data (max and ReLU commute exactly, gradients included). Its cache
  also keeps the output (ReLU's mask) and two uint8 pool index arrays.

Memory per call (beyond the conv's): forward, the output and, with a pool, the index
array(s) and (``pool - BN``) the pooled array, kept as ``xhat``; per thread, one
slab- or block-sized scratch array. Backward: one full-size array for the conv's dout
(scratch, reused from call to call) and per-thread scratch.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, NamedTuple

import numpy as np

from . import parallel
from ._scratch import scratch
from .backend import get_array_module
from .checks import check_dout, check_float, check_mode, check_ndim, check_vector, pool_shapes
from .fast_layers import _running_max, _scatter, from_internal, is_internal, to_internal
from .layers import gelu_backward, gelu_forward

ACTIVATIONS = (None, "relu", "gelu")
"""The activations the fused passes run: None, ``'relu'``, ``'gelu'`` (tanh form)."""

_ACT_CODES = {None: 0, "relu": 1, "gelu": 2}


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


def _update_running(bn_param, stats, momentum: float, C: int, xp, dtype) -> None:
    rm = bn_param.get("running_mean")
    rv = bn_param.get("running_var")
    if rm is None:
        rm = xp.zeros(C, dtype=dtype)
        rv = xp.zeros(C, dtype=dtype)
    bn_param["running_mean"] = momentum * rm + (1 - momentum) * stats[0]
    bn_param["running_var"] = momentum * rv + (1 - momentum) * stats[1]


# --- NumPy block kernels: z (c, ...) is one block of channels -----------------------------


def _pool_block(z, out, idx_w, idx_h, p) -> None:
    """Max pool of z (c, H, W, N) into out (c, H', W', N), recording the winners."""
    xp = get_array_module(z)
    PH, PW, s, H_out, W_out = p
    a = scratch(xp, "fused_rows", (z.shape[0], z.shape[1], W_out, z.shape[3]), z.dtype)
    _running_max([z[:, :, j : j + s * W_out : s] for j in range(PW)], a, idx_w)
    _running_max([a[:, i : i + s * H_out : s] for i in range(PH)], out, idx_h)


def _pool_block_backward(d, idx_w, idx_h, p, dst) -> None:
    """Route d (c, H', W', N) to the winners in dst (c, H, W, N); zeros elsewhere."""
    xp = get_array_module(d)
    PH, PW, s, H_out, W_out = p
    da = scratch(xp, "fused_drows", idx_w.shape, d.dtype)
    _scatter(d, idx_h, PH, s, H_out, da, axis=1)
    _scatter(da, idx_w, PW, s, W_out, dst, axis=2)


def _bn_train_block(z, gamma, beta, eps: float, y, stats) -> None:
    """Normalise z (c, ...) in place into xhat and write ``gamma * xhat + beta`` to y;
    stats (3, c) receives the mean, variance and 1 / sqrt(var + eps)."""
    xp = get_array_module(z)
    c = z.shape[0]
    z2 = z.reshape(c, -1)
    bshape = (c,) + (1,) * (z.ndim - 1)
    mean = z2.mean(axis=1)
    z -= mean.reshape(bshape)
    sq = scratch(xp, "fused_sq", z2.shape, z.dtype)
    xp.multiply(z2, z2, out=sq)
    var = sq.mean(axis=1)
    inv_std = 1.0 / xp.sqrt(var + eps)
    z *= inv_std.reshape(bshape)
    xp.multiply(z, gamma.reshape(bshape), out=y)
    y += beta.reshape(bshape)
    stats[0], stats[1], stats[2] = mean, var, inv_std


def _bn_test_block(z, scale, shift, beta, y) -> None:
    """y = (z - running_mean) * gamma / sqrt(running_var + eps) + beta (as the naive layer)."""
    bshape = (z.shape[0],) + (1,) * (z.ndim - 1)
    get_array_module(z).subtract(z, shift.reshape(bshape), out=y)
    y *= scale.reshape(bshape)
    y += beta.reshape(bshape)


def _bn_backward_block(d, xhat, gamma, inv_std, dx, grads) -> None:
    """Batch norm's backward on one block: dx = gamma * inv_std * (d - (xhat * dgamma +
    dbeta) / m); grads (2, c) receives dgamma and dbeta. dx may be d."""
    xp = get_array_module(d)
    c = d.shape[0]
    m = d.size // max(c, 1)
    bshape = (c,) + (1,) * (d.ndim - 1)
    tmp = scratch(xp, "fused_tmp", d.shape, d.dtype)
    dbeta = d.reshape(c, -1).sum(axis=1)
    xp.multiply(d, xhat, out=tmp)
    dgamma = tmp.reshape(c, -1).sum(axis=1)
    xp.multiply(xhat, (dgamma / m).reshape(bshape), out=tmp)
    tmp += (dbeta / m).reshape(bshape)
    xp.subtract(d, tmp, out=dx)
    dx *= (gamma * inv_std).reshape(bshape)
    grads[0], grads[1] = dgamma, dbeta


def _act_block(act, y, ob) -> None:
    """ob = act(y) (y may be ob)."""
    xp = get_array_module(y)
    if act == "relu":
        xp.maximum(y, 0, out=ob)
    elif act == "gelu":
        ob[...] = gelu_forward(y)[0]
    elif y is not ob:
        ob[...] = y


def _gelu_grad_block(y, d, dst) -> None:
    """dst = d * GELU'(y), as :func:`nndl.layers.gelu_backward` (tanh recomputed)."""
    _, cache = gelu_forward(y)
    dst[...] = gelu_backward(d, cache)


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
    kernels = parallel.compiled(ac, "_numba_fused")
    run = _forward_compiled if kernels is not None else _forward_numpy
    out, pre, idx, keep_out = run(kernels, ac, p, mode, g, be, eps, stats)
    if p.bn and mode == "train":
        _update_running(bn_param, stats, momentum, C, xp, ac.dtype)
    inv_std = stats[2] if p.bn and mode == "train" else None
    cache = _Cache(p, ac.shape, mode, kernels is not None, pre, idx,
                   out if keep_out else None, g, be, inv_std)  # fmt: skip
    return out, cache


def _dummy(a):
    return np.zeros(1, dtype=a.dtype)


def _forward_compiled(k, ac, p: Plan, mode, g, be, eps, stats):
    ac = np.ascontiguousarray(ac)
    act = _ACT_CODES[p.act]
    train = mode == "train"
    if not p.bn:
        g = be = _dummy(ac)
    C = ac.shape[0]
    if p.pool is None:
        out = np.empty_like(ac)
        k.forward_plain(ac, p.bn, train, g, be, eps, stats, act, out)
        return out, ac, None, False
    PH, PW, s, Ho, Wo = p.pool
    shape = (C, Ho, Wo, ac.shape[3])
    out = np.empty(shape, ac.dtype)
    ix = np.empty(shape, np.uint8)
    if p.pool_first:
        pooled = np.empty(shape, ac.dtype)
        k.forward_pool_first(ac, PH, PW, s, pooled, ix, p.bn, train, g, be, eps, stats, act, out)
        return out, pooled, ix, False
    y = scratch(np, "fused_y", (_chunks(C), *ac.shape[1:]), ac.dtype)
    k.forward_pool_last(ac, PH, PW, s, p.bn, train, g, be, eps, stats, act, y, out, ix)
    return out, ac, ix, False


def _chunks(C: int) -> int:
    """Scratch slabs for kernels that need one per task: one per thread."""
    return max(1, min(C, parallel.get_num_threads()))


def _forward_numpy(_, ac, p: Plan, mode, g, be, eps, stats):
    xp = get_array_module(ac)
    C = ac.shape[0]
    pooled_shape = idx = None
    if p.pool is not None:
        pooled_shape = (C, p.pool[3], p.pool[4], ac.shape[3])
        idx = (
            xp.empty((C, ac.shape[1], p.pool[4], ac.shape[3]), dtype=xp.uint8),
            xp.empty(pooled_shape, dtype=xp.uint8),
        )
    out = xp.empty(pooled_shape or ac.shape, dtype=ac.dtype)
    # pool - BN normalises the pooled array in place, and pool - act reads it in the
    # backward pass: keep it apart from out.
    pooled = xp.empty(pooled_shape, ac.dtype) if p.pool_first and (p.bn or p.act) else out
    pool_last = p.pool is not None and not p.pool_first
    relu_after_pool = p.act == "relu" and pool_last  # max and ReLU commute

    def block(c0: int, c1: int) -> None:
        z = ac[c0:c1]
        ob = out[c0:c1]
        ix = (idx[0][c0:c1], idx[1][c0:c1]) if idx is not None else None
        if p.pool_first:
            _pool_block(z, pooled[c0:c1], *ix, p.pool)
            z = pooled[c0:c1]
        y = z
        if p.bn:
            y = scratch(xp, "fused_y", z.shape, z.dtype) if pool_last else ob
            if mode == "train":
                _bn_train_block(z, g[c0:c1], be[c0:c1], eps, y, stats[:, c0:c1])
            else:
                _bn_test_block(z, stats[2, c0:c1], stats[0, c0:c1], be[c0:c1], y)
        if pool_last:
            if p.act is not None and not relu_after_pool:
                a = scratch(xp, "fused_act", y.shape, y.dtype)
                _act_block(p.act, y, a)
                y = a
            _pool_block(y, ob, *ix, p.pool)
            if relu_after_pool:
                xp.maximum(ob, 0, out=ob)
        else:
            _act_block(p.act, y, ob)

    parallel.run(block, parallel.blocks(C, ac[0].nbytes))
    pre = pooled if p.pool_first else ac
    return out, pre, idx, p.act == "relu"


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
        _backward_compiled(parallel.compiled(dc, "_numba_fused"), dc, cache, da, grads)
    else:
        _backward_numpy(dc, cache, da, grads)
    if not p.bn:
        return da, None, None
    return da, grads[0], grads[1]


def _backward_compiled(k, dc, cache: _Cache, da, grads) -> None:
    if k is None:
        raise RuntimeError(
            "post_conv_backward: the forward pass used the compiled kernels, which are no "
            "longer available (NNDL_NUMBA=0 set between the passes?)"
        )
    p = cache.p
    dc = np.ascontiguousarray(dc, dtype=da.dtype)
    act = _ACT_CODES[p.act]
    g, be, inv_std = cache.gamma, cache.beta, cache.inv_std
    if not p.bn:
        g = be = inv_std = _dummy(dc)
    if p.pool is None:
        k.backward_plain(dc, cache.pre, p.bn, g, be, inv_std, act, da, grads)
        return
    PH, PW, s = p.pool[:3]
    if p.pool_first:
        tmp = scratch(np, "fused_dpool", (_chunks(dc.shape[0]), *dc.shape[1:]), dc.dtype)
        k.backward_pool_first(dc, cache.pre, cache.pool_idx, PH, PW, s, p.bn, g, be, inv_std,
                              act, tmp, da, grads)  # fmt: skip
    else:
        k.backward_pool_last(dc, cache.pool_idx, PH, PW, s, cache.pre, p.bn, g, be, inv_std,
                             act, da, grads)  # fmt: skip


def _backward_numpy(dc, cache: _Cache, da, grads) -> None:
    p = cache.p
    xp = get_array_module(dc)
    a_shape = cache.a_shape
    pool_last = p.pool is not None and not p.pool_first
    relu_after_pool = p.act == "relu" and pool_last
    # Stages in backward order; 'act' before 'pool' when ReLU ran after the pool.
    stages = []
    if pool_last:
        stages += ["act", "pool"] if relu_after_pool else ["pool", "act"]
    elif p.act:
        stages.append("act")
    stages += (["bn"] if p.bn else []) + (["pool"] if p.pool_first else [])
    stages = [s for s in stages if s != "act" or p.act]
    g, be, inv_std = cache.gamma, cache.beta, cache.inv_std

    def block(c0: int, c1: int) -> None:
        d = dc[c0:c1]
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            # Only a pool changes the resolution: to the conv output's.
            shape = (c1 - c0, *a_shape[1:]) if stage == "pool" else d.shape
            dst = da[c0:c1] if last else scratch(xp, f"fused_d{i}", shape, d.dtype)
            if stage == "pool":
                _pool_block_backward(d, *(ix[c0:c1] for ix in cache.pool_idx), p.pool, dst)
            elif stage == "act" and p.act == "relu":
                xp.multiply(d, cache.out[c0:c1] > 0, out=dst)
            elif stage == "act":  # GELU at its input y, recomputed
                pre = cache.pre[c0:c1]
                if p.bn:
                    bshape = (c1 - c0,) + (1,) * (pre.ndim - 1)
                    y = scratch(xp, "fused_y", pre.shape, pre.dtype)
                    xp.multiply(pre, g[c0:c1].reshape(bshape), out=y)
                    y += be[c0:c1].reshape(bshape)
                    pre = y
                _gelu_grad_block(pre, d, dst)
            else:  # bn
                _bn_backward_block(d, cache.pre[c0:c1], g[c0:c1], inv_std[c0:c1], dst,
                                   grads[:, c0:c1])  # fmt: skip
            d = dst

    parallel.run(block, parallel.blocks(a_shape[0], max(dc[0].nbytes, da[0].nbytes)))


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
    kernels = parallel.compiled(x, "_numba_fused")
    flat = _flat(x) if kernels is not None else None
    if flat is None:
        out, cache = gelu_forward(x)
        return out, ("numpy", cache)
    out = np.empty_like(x)  # same memory order as x
    kernels.activation_forward(flat, _ACT_CODES["gelu"], _flat(out))
    return out, ("compiled", x)


def gelu_backward_fast(dout, cache):
    """Gradient of :func:`gelu_forward_fast`; dx has the shape and layout of dout."""
    kind, inner = cache
    if kind == "numpy":
        return gelu_backward(dout, inner)
    x = inner
    check_dout("gelu_backward_fast", dout, x.shape)
    kernels = parallel.compiled(x, "_numba_fused")
    dx = np.empty_like(x)
    d = dout if _flat(dout) is not None and dout.strides == x.strides else None
    if d is None:  # lay dout out as x is
        d = np.empty_like(x)
        d[...] = dout
    kernels.activation_backward(_flat(d), _flat(x), _ACT_CODES["gelu"], _flat(dx))
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
