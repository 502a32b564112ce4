"""The thread pool: deterministic blocks, every span run once, errors re-raised."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from nndl.kernels import parallel


def test_blocks_cover_the_range_once_and_ignore_the_thread_count():
    spans = parallel.blocks(10, 300, block_bytes=1000)
    assert spans == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert parallel.blocks(0, 8) == []
    assert parallel.blocks(5, 10**9, block_bytes=1) == [(i, i + 1) for i in range(5)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_run_calls_every_span_once_and_reraises(threads):
    before = parallel.get_num_threads()
    parallel.set_num_threads(threads)
    try:
        seen, lock = [], threading.Lock()

        def work(a, b):
            with lock:
                seen.append((a, b))

        spans = parallel.blocks(50, 1, block_bytes=7)
        parallel.run(work, spans)
        assert sorted(seen) == spans

        def fail(a, b):
            if a == 7:
                raise RuntimeError("block 7 failed")

        with pytest.raises(RuntimeError, match="block 7 failed"):
            parallel.run(fail, spans)
        # Nested calls run serially instead of waiting on the pool.
        nested = []
        parallel.run(lambda a, b: parallel.run(lambda c, d: nested.append(c), [(a, b)]), spans)
        assert sorted(nested) == [a for a, _ in spans]
    finally:
        parallel.set_num_threads(before)


def test_bad_thread_counts_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="set_num_threads: expected n >= 1"):
        parallel.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads: expected n to be an int"):
        parallel.set_num_threads(1.5)
    monkeypatch.setenv("NNDL_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="NNDL_NUM_THREADS"):
        parallel._default_threads()
    monkeypatch.setenv("NNDL_NUM_THREADS", "3")
    assert parallel._default_threads() == 3


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stacked_matmul_over_threads_equals_numpy(threads):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5, 4)).astype(np.float32)
    b = rng.standard_normal((7, 4, 6)).astype(np.float32)
    bt = rng.standard_normal((7, 6, 4)).astype(np.float32).transpose(0, 2, 1)  # strided
    before = parallel.get_num_threads()
    try:
        parallel.set_num_threads(threads)
        for rhs in (b, bt):
            out = np.empty((7, 5, 6), np.float32)
            assert parallel.matmul(a, rhs, out) is out
            np.testing.assert_array_equal(out, np.matmul(a, rhs))
    finally:
        parallel.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stacked_matmul_add_over_threads_equals_numpy(threads):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 5, 4)).astype(np.float32)
    bt = rng.standard_normal((7, 6, 4)).astype(np.float32).transpose(0, 2, 1)  # strided
    acc0 = rng.standard_normal((7, 5, 6)).astype(np.float32)
    before = parallel.get_num_threads()
    try:
        parallel.set_num_threads(threads)
        acc, tmp = acc0.copy(), np.full((7, 5, 6), np.nan, np.float32)
        assert parallel.matmul_add(a, bt, acc, tmp) is acc
        np.testing.assert_array_equal(acc, acc0 + np.matmul(a, bt))
    finally:
        parallel.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_to_internal_copies_in_blocks_and_equals_the_transpose(threads, monkeypatch):
    from nndl.kernels.layout import to_internal

    monkeypatch.setattr(parallel, "BLOCK_BYTES", 64)  # many blocks of rows
    x = np.random.default_rng(2).standard_normal((5, 3, 4, 6)).astype(np.float32)
    before = parallel.get_num_threads()
    try:
        parallel.set_num_threads(threads)
        y = to_internal(x)
        assert y.flags.c_contiguous and y.shape == (3, 4, 6, 5)
        np.testing.assert_array_equal(y, x.transpose(1, 2, 3, 0))
        assert np.shares_memory(to_internal(y.transpose(3, 0, 1, 2)), y)  # no copy
    finally:
        parallel.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_starts_its_own_helper_threads():
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        spans = [(0, 1), (1, 2)]
        parallel.run(lambda a, b: None, spans)  # the parent's helper thread exists now
        parent_jobs = parallel._state["jobs"]
        pid = os.fork()
        if pid == 0:  # the child: no thread takes from the parent's queue here
            seen = []
            for _ in range(50):
                parallel.run(lambda a, b: seen.append(a), spans)
            own = parallel._state["jobs"] is not parent_jobs
            os._exit(0 if own and sorted(seen) == [0] * 50 + [1] * 50 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        parallel.set_num_threads(before)
