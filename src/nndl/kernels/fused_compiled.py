"""Dispatch of :mod:`nndl.kernels.fused`'s passes to the compiled kernels of
:mod:`nndl.kernels.numba_fused`.

What it computes: the same passes as :mod:`nndl.kernels.fused_numpy` (the tests compare them),
forward and backward, by calling the one kernel that does the plan's stages in order.

Why it is fast: each kernel does one channel at a time on nndl's threads, in one sweep
per stage over the channel's contiguous slab; the activation's derivative is recomputed
from ``xhat`` in the backward pass, so nothing but ``xhat``, the pool's window index
(uint8) and the batch statistics is cached.

Memory: forward, the output, the index array and (``pool - BN``) the pooled array, kept
as ``xhat``; per thread, one slab-sized scratch array (``_chunks``).
"""

from __future__ import annotations

import numpy as np

from ..functional.activation import ACTIVATIONS
from . import parallel
from .scratch import scratch

ACT_CODES = {None: 0, **{name: a.code for name, a in ACTIVATIONS.items()}}
"""Activation name -> its code in the compiled kernels (from the one registry)."""
run = parallel.run_compiled


def _dummy(a):
    return np.zeros(1, dtype=a.dtype)


def forward_compiled(k, ac, p, mode, g, be, eps, stats):
    ac = np.ascontiguousarray(ac)
    act = ACT_CODES[p.act]
    train = mode == "train"
    if not p.bn:
        g = be = _dummy(ac)
    C = ac.shape[0]
    if p.pool is None:
        out = np.empty_like(ac)
        run(k.forward_plain, C, ac, p.bn, train, g, be, eps, stats, act, out)
        return out, ac, None, False
    PH, PW, s, Ho, Wo = p.pool
    shape = (C, Ho, Wo, ac.shape[3])
    out = np.empty(shape, ac.dtype)
    ix = np.empty(shape, np.uint8)
    if p.pool_first:
        pooled = np.empty(shape, ac.dtype)
        run(k.forward_pool_first, C, ac, PH, PW, s, pooled, ix, p.bn, train, g, be, eps, stats,
            act, out)  # fmt: skip
        return out, pooled, ix, False
    y = scratch(np, "fused_y", (_chunks(C), *ac.shape[1:]), ac.dtype)
    run(k.forward_pool_last, len(y), ac, PH, PW, s, p.bn, train, g, be, eps, stats, act, y, out, ix)
    return out, ac, ix, False


def _chunks(C: int) -> int:
    """Scratch slabs for kernels that need one per task: one per thread."""
    return max(1, min(C, parallel.get_num_threads()))


def backward_compiled(k, dc, cache, da, grads) -> None:
    if k is None:
        raise RuntimeError(
            "post_conv_backward: the forward pass used the compiled kernels, which are no "
            "longer available (NNDL_NUMBA=0 set between the passes?)"
        )
    p = cache.p
    dc = np.ascontiguousarray(dc, dtype=da.dtype)
    act = ACT_CODES[p.act]
    g, be, inv_std = cache.gamma, cache.beta, cache.inv_std
    if not p.bn:
        g = be = inv_std = _dummy(dc)
    if p.pool is None:
        run(k.backward_plain, len(dc), dc, cache.pre, p.bn, g, be, inv_std, act, da, grads)
        return
    PH, PW, s = p.pool[:3]
    if p.pool_first:
        tmp = scratch(np, "fused_dpool", (_chunks(dc.shape[0]), *dc.shape[1:]), dc.dtype)
        run(k.backward_pool_first, len(tmp), dc, cache.pre, cache.pool_idx, PH, PW, s, p.bn, g,
            be, inv_std, act, tmp, da, grads)  # fmt: skip
    else:
        run(k.backward_pool_last, len(dc), dc, cache.pool_idx, PH, PW, s, cache.pre, p.bn, g, be,
            inv_std, act, da, grads)  # fmt: skip


__all__ = ["ACT_CODES", "backward_compiled", "forward_compiled"]
