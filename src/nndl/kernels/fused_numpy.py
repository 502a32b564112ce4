"""The NumPy implementation of :mod:`nndl.kernels.fused`'s passes: the reference the compiled
kernels are tested against, and their fallback.

What it computes: [max pool] - [batch norm] - [activation] - [max pool] after a
convolution (the stages of a :class:`nndl.kernels.fused.Plan`), forward and backward, on a
(C, H, W, N) conv output, equal to the naive layers composed.

Why it is fast: the passes run on blocks of channels on :mod:`nndl.kernels.parallel`'s threads,
one block's stages back to back while its data is still in the core's cache; batch norm
normalises the conv output in place (it becomes the cached ``xhat``); with
``BN - ReLU - pool`` the ReLU runs after the pool on a quarter of the data (max and ReLU
commute exactly, gradients included). Per-channel sums lie inside one block, so results
do not depend on the thread count.

Memory: the cache keeps the output (ReLU's mask), two uint8 pool index arrays and
(``pool - BN``) the pooled array as ``xhat``; per thread, block-sized scratch arrays.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..functional.activation import gelu_backward, gelu_forward
from . import parallel
from .max_pool import running_max, scatter
from .scratch import scratch

# --- NumPy block kernels: z (c, ...) is one block of channels -----------------------------


def _pool_block(z, out, idx_w, idx_h, p) -> None:
    """Max pool of z (c, H, W, N) into out (c, H', W', N), recording the winners."""
    xp = get_array_module(z)
    PH, PW, s, H_out, W_out = p
    a = scratch(xp, "fused_rows", (z.shape[0], z.shape[1], W_out, z.shape[3]), z.dtype)
    running_max([z[:, :, j : j + s * W_out : s] for j in range(PW)], a, idx_w)
    running_max([a[:, i : i + s * H_out : s] for i in range(PH)], out, idx_h)


def _pool_block_backward(d, idx_w, idx_h, p, dst) -> None:
    """Route d (c, H', W', N) to the winners in dst (c, H, W, N); zeros elsewhere."""
    xp = get_array_module(d)
    PH, PW, s, H_out, W_out = p
    da = scratch(xp, "fused_drows", idx_w.shape, d.dtype)
    scatter(d, idx_h, PH, s, H_out, da, axis=1)
    scatter(da, idx_w, PW, s, W_out, dst, axis=2)


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


def forward_numpy(_, ac, p, mode, g, be, eps, stats):
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


def backward_numpy(dc, cache, da, grads) -> None:
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


__all__ = ["backward_numpy", "forward_numpy"]
