"""Fused passes after a convolution: [max pool] - [batch norm] - [ReLU] - [max pool].

What it computes: exactly the composition of :func:`nndl.conv_layers.spatial_batchnorm_forward`,
ReLU and :func:`nndl.fast_layers.max_pool_forward_fast` (and their backward passes) in
either order that networks use: ``conv - BN - act - pool`` (the CS231n sandwiches,
ResNets) or ``conv - pool - BN - act`` (airbench). The tests prove it against the naive
layers.

Why it is fast: the conv output is a (C, H, W, N) buffer (:mod:`nndl.fast_layers`), so a
block of channels is one contiguous slab. Every stage runs on one block at a time, on
:mod:`nndl.parallel`'s threads, while the block is still in the core's cache: the
per-channel mean and variance, the normalisation, the affine step, the pool and the
ReLU read memory about once instead of once per NumPy call. Batch norm normalises in
place in the buffer it is given (the conv output, or the pooled array), which becomes
the cached ``xhat``: no second full-size array. With ``BN - ReLU - pool`` the ReLU runs
after the pool on a quarter of the data: max and ReLU commute exactly, gradients
included (the pool routes each gradient to its window's first maximum, and ReLU's mask
there is ``pooled > 0``). Per-channel sums lie inside one block, so results do not
depend on the thread count.

Memory per call (beyond the conv's): forward, the output, the pool's two uint8 index
arrays and, for ``pool - BN``, the pooled array (kept as ``xhat``); per thread, one
block-sized scratch array. Backward: one full-size array for the conv's dout (scratch,
reused from call to call) and per-thread block scratch.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, NamedTuple

from . import parallel
from ._scratch import scratch
from .backend import get_array_module
from .checks import check_mode, check_vector, pool_shapes
from .fast_layers import _running_max, _scatter, from_internal


class Plan(NamedTuple):
    """What follows the conv: which stages, in which order."""

    bn: bool
    relu: bool
    pool: tuple[int, int, int, int, int] | None  # PH, PW, stride, H', W'
    pool_first: bool


def plan(fn: str, ac, bn: bool, relu: bool, pool_param, pool_first: bool) -> Plan:
    """Validate the pool and return the plan for the (C, H, W, N) conv output ``ac``."""
    pool = None
    if pool_param is not None:
        pool = pool_shapes(fn, from_internal(ac), pool_param)
    return Plan(bn, relu, pool, pool_first and pool is not None)


def _bn_params(fn: str, C: int, dtype, gamma, beta, bn_param: MutableMapping[str, Any]):
    mode = check_mode(fn, "bn_param", bn_param)
    check_vector(fn, "gamma", gamma, C)
    check_vector(fn, "beta", beta, C)
    return mode, bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)


# --- block kernels: z (c, ...) is one block of channels -----------------------------------


def _pool_block(z, out, idx_w, idx_h, p) -> None:
    """Max pool of z (c, H, W, N) into out (c, H', W', N), recording the winners."""
    xp = get_array_module(z)
    PH, PW, s, H_out, W_out = p
    a = scratch(xp, "fused_rows", (z.shape[0], z.shape[1], W_out, z.shape[3]), z.dtype)
    _running_max([z[:, :, j : j + s * W_out : s] for j in range(PW)], a, idx_w)
    _running_max([a[:, i : i + s * H_out : s] for i in range(PH)], out, idx_h)


def _pool_block_backward(d, idx_w, idx_h, p, dst) -> None:
    """Route d (c, H', W', N) to the winners in dst (c, H, W, N)."""
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


def _bn_test_block(z, gamma, beta, rm, rv, eps: float, y) -> None:
    """y = (z - running_mean) * gamma / sqrt(running_var + eps) + beta (as the naive layer)."""
    xp = get_array_module(z)
    bshape = (z.shape[0],) + (1,) * (z.ndim - 1)
    scale = gamma.reshape(bshape) / xp.sqrt(rv.reshape(bshape) + eps)
    xp.subtract(z, rm.reshape(bshape), out=y)
    y *= scale
    y += beta.reshape(bshape)


def _bn_backward_block(d, xhat, gamma, inv_std, dx, grads) -> None:
    """Batch norm's backward on one block: dx = gamma * inv_std * (d - (xhat * dgamma +
    dbeta) / m); grads (2, c) receives dgamma and dbeta."""
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


# --- the pipeline -------------------------------------------------------------------------


def post_conv_forward(ac, p: Plan, fn: str, gamma=None, beta=None, bn_param=None):
    """Run the plan on the conv output ac (C, H, W, N), which it may overwrite.

    Returns ``out`` (C, H', W', N) and the cache for :func:`post_conv_backward`.
    """
    xp = get_array_module(ac)
    C = ac.shape[0]
    mode = "train"
    if p.bn:
        mode, eps, momentum = _bn_params(fn, C, ac.dtype, gamma, beta, bn_param)
        g = gamma.astype(ac.dtype, copy=False)
        be = beta.astype(ac.dtype, copy=False)
        if mode == "test":
            rm, rv = bn_param.get("running_mean"), bn_param.get("running_var")
            if rm is None or rv is None:
                raise ValueError(
                    f"{fn}: bn_param has mode 'test' but no running_mean/running_var; "
                    "expected at least one forward pass in mode 'train' first"
                )
    pooled_shape = None
    if p.pool is not None:
        pooled_shape = (C, p.pool[3], p.pool[4], ac.shape[3])
        idx_w = xp.empty((C, ac.shape[1], p.pool[4], ac.shape[3]), dtype=xp.uint8)
        idx_h = xp.empty(pooled_shape, dtype=xp.uint8)
    out = ac if not (p.bn or p.pool) else xp.empty(pooled_shape or ac.shape, dtype=ac.dtype)
    # pool - BN normalises the pooled array in place: keep it apart from out.
    pooled = xp.empty(pooled_shape, ac.dtype) if p.pool_first and p.bn else out
    stats = xp.empty((3, C), dtype=ac.dtype)

    def block(c0: int, c1: int) -> None:
        z = ac[c0:c1]
        ob = out[c0:c1]
        if p.pool_first:
            _pool_block(z, pooled[c0:c1], idx_w[c0:c1], idx_h[c0:c1], p.pool)
            z = pooled[c0:c1]
        if p.bn:
            pool_after = p.pool is not None and not p.pool_first
            y = scratch(xp, "fused_y", z.shape, z.dtype) if pool_after else ob
            if mode == "train":
                _bn_train_block(z, g[c0:c1], be[c0:c1], eps, y, stats[:, c0:c1])
            else:
                _bn_test_block(z, g[c0:c1], be[c0:c1], rm[c0:c1], rv[c0:c1], eps, y)
            z = y
        if p.pool is not None and not p.pool_first:
            _pool_block(z, ob, idx_w[c0:c1], idx_h[c0:c1], p.pool)
            z = ob
        if p.relu:
            xp.maximum(z, 0, out=ob)
        elif z is not ob:
            ob[...] = z

    parallel.run(block, parallel.blocks(C, ac[0].nbytes))
    if p.bn and mode == "train":
        rm = bn_param.get("running_mean")
        rv = bn_param.get("running_var")
        if rm is None:
            rm = xp.zeros(C, dtype=ac.dtype)
            rv = xp.zeros(C, dtype=ac.dtype)
        bn_param["running_mean"] = momentum * rm + (1 - momentum) * stats[0]
        bn_param["running_var"] = momentum * rv + (1 - momentum) * stats[1]
    xhat = None
    if p.bn and mode == "train":
        xhat = pooled if p.pool_first else ac
    pool_cache = (idx_w, idx_h) if p.pool is not None else None
    bn_cache = (xhat, gamma, stats[2]) if xhat is not None else None
    return out, (p, ac.shape, out, pool_cache, bn_cache, mode)


def post_conv_backward(dc, cache, fn: str):
    """Backward of :func:`post_conv_forward`: dc (C, H', W', N) -> the conv output's
    gradient (C, H, W, N) (a reused scratch buffer), dgamma, dbeta (None without BN)."""
    p, a_shape, out, pool_cache, bn_cache, mode = cache
    if p.bn and mode != "train":
        raise ValueError(f"{fn}: expected a cache from a 'train' mode forward, got a test-mode one")
    xp = get_array_module(dc)
    C = a_shape[0]
    da = scratch(xp, "fused_dconv", a_shape, dc.dtype)
    grads = xp.empty((2, C), dtype=dc.dtype)
    stages = (["relu"] if p.relu else []) + (["pool"] if p.pool and not p.pool_first else [])
    stages += (["bn"] if p.bn else []) + (["pool"] if p.pool_first else [])
    if bn_cache is not None:
        xhat, gamma, inv_std = bn_cache
        g = gamma.astype(dc.dtype, copy=False)

    def block(c0: int, c1: int) -> None:
        d = dc[c0:c1]
        n = c1 - c0
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            if stage == "relu":
                dst = da[c0:c1] if last else scratch(xp, "fused_dz", d.shape, d.dtype)
                mask = scratch(xp, "fused_mask", d.shape, bool)
                xp.greater(out[c0:c1], 0, out=mask)
                xp.multiply(d, mask, out=dst)
            elif stage == "pool":
                shape = (n, *a_shape[1:])
                dst = da[c0:c1] if last else scratch(xp, "fused_dfull", shape, d.dtype)
                idx_w, idx_h = pool_cache
                _pool_block_backward(d, idx_w[c0:c1], idx_h[c0:c1], p.pool, dst)
            else:  # bn
                dst = da[c0:c1] if last else scratch(xp, "fused_dbn", d.shape, d.dtype)
                _bn_backward_block(d, xhat[c0:c1], g[c0:c1], inv_std[c0:c1], dst, grads[:, c0:c1])
            d = dst
        if not stages:
            da[c0:c1] = d

    parallel.run(block, parallel.blocks(C, max(dc[0].nbytes, da[0].nbytes)))
    if not p.bn:
        return da, None, None
    return da, grads[0], grads[1]


__all__ = ["Plan", "plan", "post_conv_backward", "post_conv_forward"]
