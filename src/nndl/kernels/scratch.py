"""Per-thread reusable buffers for the fast layers' temporaries.

A fresh multi-megabyte array costs a page fault per 4 KiB on first touch, which doubled
the time of a small convolution; the fast layers therefore keep their temporaries (GEMM
outputs, un-cached column or Winograd buffers, pooling and batch-norm blocks) in buffers
that are reused from call to call. Each thread (the caller and every pool thread) has its
own set, so blocks running in parallel never share one. A buffer keeps the largest size
its slot reached; :func:`free_scratch` releases them.

A scratch buffer is never returned to the caller nor kept in a cache: the next call that
uses the same slot overwrites it.
"""

from __future__ import annotations

import math
import threading

_local = threading.local()
_all_stores: list[dict] = []  # every thread's store, so free_scratch reaches the pool's too
_lock = threading.Lock()


def scratch(xp, slot: str, shape: tuple[int, ...], dtype):
    """A reusable per-thread buffer of ``shape`` and ``dtype`` for the temporary ``slot``."""
    store = getattr(_local, "buffers", None)
    if store is None:
        store = _local.buffers = {}
        with _lock:
            _all_stores.append(store)
    key = (slot, xp.__name__, xp.dtype(dtype).str)
    size = math.prod(shape)
    buf = store.get(key)
    if buf is None or buf.size < size:
        buf = store[key] = xp.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def free_scratch() -> None:
    """Release every thread's scratch buffers (re-created on the next call).

    Call it between layer calls, not while one is running in another thread.
    """
    with _lock:
        for store in _all_stores:
            store.clear()


__all__ = ["scratch", "free_scratch"]
