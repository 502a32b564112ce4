"""A small thread pool for NumPy's element-wise work, so it uses every core BLAS uses.

NumPy releases the GIL inside its loops (ufuncs, reductions, copies), so plain Python
threads that each run NumPy calls on a disjoint part of an array run in parallel. The
fast layers split their element-wise passes (im2col, Winograd transforms, batch norm,
pooling, ReLU) into blocks of channels and hand the blocks to :func:`run`.

Determinism: the blocks come from :func:`blocks`, which depends only on the problem's
size, never on the thread count or on timing; every block writes its own slice of the
output, and every reduction (a channel's mean, a bias gradient) lies inside one block.
So results are bitwise identical for any thread count and any run.

Threads: ``NNDL_NUM_THREADS`` in the environment, else the CPUs this process may use;
:func:`set_num_threads` changes it at run time (1 runs every block in the caller's
thread). BLAS calls never run inside the pool, so the pool and BLAS's own threads take
turns instead of competing for the cores.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import check_count

BLOCK_BYTES = 1 << 21
"""Target bytes of one block's main array: about a core's L2 cache, so a block's several
passes run on cached data."""


def _default_threads() -> int:
    env = os.environ.get("NNDL_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(
                "nndl.kernels.parallel: expected NNDL_NUM_THREADS to be a whole number >= 1, "
                f"got {env!r}"
            )
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_state: dict[str, Any] = {"threads": None, "jobs": None}
_lock = threading.Lock()
_inside = threading.local()


def get_num_threads() -> int:
    """Threads the fast layers' element-wise passes use."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) for the fast layers' element-wise passes from now on."""
    n = check_count("set_num_threads", "n", n, 1)
    with _lock:
        if n != _state["threads"] and _state["jobs"] is not None:
            for _ in range(_state["threads"] - 1):
                _state["jobs"].put(None)  # each old helper thread ends at its next get
            _state["jobs"] = None
        _state["threads"] = n


class _Job:
    """One :func:`run` call: its spans, taken one at a time by whichever thread is free."""

    def __init__(self, fn: Callable[[int, int], None], spans: Sequence[tuple[int, int]]):
        self.fn, self.spans = fn, spans
        self.taken = 0
        self.left = len(spans)
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def work(self) -> None:
        """Run spans until none is left to take; the last one to finish sets ``finished``."""
        while True:
            with self.lock:
                if self.taken == len(self.spans):
                    return
                span = self.spans[self.taken]
                self.taken += 1
            try:
                self.fn(*span)
            except BaseException as exc:  # re-raised in run's caller
                self.error = self.error or exc
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.finished.set()


def _helpers(n: int) -> queue.SimpleQueue:
    """The queue of jobs that ``n - 1`` helper threads take from (started on first use)."""
    with _lock:
        if _state["jobs"] is None:
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            for i in range(n - 1):
                helper = threading.Thread(target=_helper, args=(jobs,), name=f"nndl_{i}")
                helper.daemon = True
                helper.start()
            _state["jobs"] = jobs
        return _state["jobs"]


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads do not exist there, so start anew
    (jobs put for them would never be taken, and would keep their arrays alive)."""
    _state["jobs"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def _helper(jobs: queue.SimpleQueue) -> None:
    _inside.active = True  # a run() inside a span runs serially
    while (job := jobs.get()) is not None:
        job.work()


def blocks(n: int, bytes_per_item: int, block_bytes: int | None = None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``(start, stop)`` blocks of about ``block_bytes`` each.

    Depends only on its arguments (never on the thread count), which keeps results
    independent of how many threads run the blocks.
    """
    if block_bytes is None:
        block_bytes = BLOCK_BYTES
    per = max(1, block_bytes // max(1, bytes_per_item))
    return [(i, min(n, i + per)) for i in range(0, n, per)]


def run(fn: Callable[[int, int], None], spans: Sequence[tuple[int, int]]) -> None:
    """Call ``fn(start, stop)`` for every span: the caller and the pool's helper threads
    take the spans one at a time until none is left.

    Each call must write only its own part of the output. The first exception is
    re-raised in the caller. The caller works too and waits only for spans a helper has
    taken: a helper that wakes after the caller has done every span adds nothing (a
    hand-out of two small spans: a quarter of the time a future per span took,
    ``benchmarks/bench_dispatch.py``), and a lost helper (after a fork) cannot hang a
    run. Runs serially with one thread, one span, or when called from inside a span
    (nesting), and within :func:`record_compiled` (a dry run stays in its
    thread, under that thread's ``np.errstate``).
    """
    n = get_num_threads()
    serial = getattr(_inside, "active", False) or getattr(_recording, "calls", None) is not None
    if n == 1 or len(spans) <= 1 or serial:
        for span in spans:
            fn(*span)
        return
    job = _Job(fn, spans)
    jobs = _helpers(n)
    for _ in range(min(n, len(spans)) - 1):
        jobs.put(job)
    _inside.active = True
    try:
        job.work()
    finally:
        _inside.active = False
    job.finished.wait()
    if job.error is not None:
        raise job.error


_blas_state: dict[str, Any] = {"controller": None}


def _blas_controller():
    """threadpoolctl's controller (the optional ``fast`` extra), or None without it."""
    if _blas_state["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_state["controller"] = False
        else:
            _blas_state["controller"] = ThreadpoolController()
    return _blas_state["controller"] or None


def _split_products(a, part: Callable[[int, int], None]) -> bool:
    """Run ``part(i0, i1)`` over equal shares of the stacked products of ``a`` on nndl's
    threads, each BLAS call single-threaded; False (nothing run) with one thread, without
    threadpoolctl, or for arrays other than NumPy's."""
    n = min(get_num_threads(), a.shape[0])
    controller = _blas_controller() if n > 1 else None
    if controller is None or get_array_module(a) is not np:
        return False
    k = a.shape[0]
    with controller.limit(limits=1, user_api="blas"):
        run(part, [(i * k // n, (i + 1) * k // n) for i in range(n)])
    return True


def matmul(a, b, out):
    """``out[i] = a[i] @ b[i]`` for stacked matrices a (k, m, n), b (k, n, p) -> out.

    With more than one thread and threadpoolctl installed, the k products are split over
    nndl's threads, each one single-threaded BLAS call: OpenBLAS's own threads meet at
    the end of every product, and on a busy machine each meeting waits for a core (many
    small products, as a Winograd layer's 36 per chunk, then took 10x as long). Each
    product is computed whole by one thread either way, so the results do not depend on
    the thread count. Otherwise one NumPy call.
    """

    def part(i0: int, i1: int) -> None:
        np.matmul(a[i0:i1], b[i0:i1], out=out[i0:i1])

    if not _split_products(a, part):
        np.matmul(a, b, out=out)
    return out


def matmul_add(a, b, acc, tmp):
    """``acc[i] += a[i] @ b[i]`` for stacked matrices, the product going through ``tmp``
    (acc's shape): as :func:`matmul`, and each thread adds its own products, so the
    sum runs on every core instead of after the products on one."""

    def part(i0: int, i1: int) -> None:
        np.matmul(a[i0:i1], b[i0:i1], out=tmp[i0:i1])
        acc[i0:i1] += tmp[i0:i1]

    if not _split_products(a, part):
        acc += np.matmul(a, b, out=tmp)
    return acc


_numba_state: dict[str, Any] = {}


def compiled(a, load: Callable[[], ModuleType]):
    """The optional numba kernel module that ``load()`` imports, for the array a, or None when
    numba is missing, ``NNDL_NUMBA=0`` is set, or a is not a float32/float64 NumPy
    array (the caller then takes its NumPy path), or when numba cannot be loaded (the
    reason stays in ``nndl.kernels.parallel.numba_unavailable()``). Run its kernels with
    :func:`run_compiled`.
    """
    if os.environ.get("NNDL_NUMBA", "1") == "0" or not isinstance(a, np.ndarray):
        return None
    if a.dtype not in (np.float32, np.float64):
        return None
    if _numba_state.get("unavailable"):
        return None
    try:
        import numba  # noqa: F401 - the kernel modules need it
    except (ImportError, OSError) as exc:
        # OSError: numba is installed but its LLVM library cannot be loaded (seen under a
        # tight address-space limit); the NumPy path computes the same results.
        _numba_state["unavailable"] = f"{type(exc).__name__}: {exc}"
        return None
    # The one switch between NumPy and compiled kernels: ``load`` is a small function in
    # the caller that imports its numba module by name (``from . import numba_fused``), so
    # the import stays visible to the layout test and numba loads only when allowed here.
    return load()


def run_compiled(kernel: Callable[..., None], n: int, *args) -> None:
    """Call ``kernel(*args, i0, i1)`` for one range ``[i0, i1)`` of ``range(n)`` per thread.

    For the compiled kernels (serial loops over their last two arguments' range, compiled
    without the GIL): each of nndl's threads runs one equal share at once. Every index's
    work is done whole by one call, so results do not depend on the split.
    """
    calls = getattr(_recording, "calls", None)
    if calls is not None:
        calls.append((kernel, (*args, 0, n)))
        return
    t = min(get_num_threads(), n)
    if t <= 1:
        if n > 0:
            kernel(*args, 0, n)
        return

    def part(i0: int, i1: int) -> None:
        kernel(*args, i0, i1)

    run(part, [(i * n // t, (i + 1) * n // t) for i in range(t)])


_recording = threading.local()


@contextlib.contextmanager
def record_compiled() -> Iterator[list[tuple[Callable[..., None], tuple]]]:
    """A dry run: within it, :func:`run_compiled` (in this thread) runs nothing and appends
    ``(kernel, args)`` to the list it yields, ``args`` with the range ``0, n`` last.

    Which compiled kernels a pass calls, with which argument types, in call order, found
    without running (or compiling) any: the arrays the skipped kernels would have written
    keep whatever they held, so the pass's values are meaningless
    (:mod:`nndl.train.warmup` compiles the kernels it lists ahead of a run).
    """
    previous = getattr(_recording, "calls", None)
    _recording.calls = []
    try:
        yield _recording.calls
    finally:
        _recording.calls = previous


def numba_unavailable() -> str | None:
    """Why the compiled kernels could not be loaded in this process (None if they could
    or were never asked for)."""
    return _numba_state.get("unavailable")


__all__ = [
    "numba_unavailable",
    "BLOCK_BYTES",
    "blocks",
    "compiled",
    "get_num_threads",
    "matmul",
    "matmul_add",
    "record_compiled",
    "run",
    "run_compiled",
    "set_num_threads",
]
