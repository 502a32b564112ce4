"""Winograd F(2x2,3x3) and F(4x4,3x3) against the direct convolution."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import conv_reference
from hypothesis import given, settings
from hypothesis import strategies as st

from nndl.conv_layers import conv_backward_naive, conv_forward_naive
from nndl.fast_layers import conv_backward_fast, conv_forward_fast
from nndl.kernels.winograd import winograd_backward, winograd_forward
from nndl.kernels.winograd_transforms import TRANSFORMS


@pytest.mark.parametrize("m", sorted(TRANSFORMS))
def test_one_dimensional_transform_is_a_correlation(m):
    # A^T [(G g) * (B^T d)] == the m outputs of correlating d (m + 2) with g (3).
    t = TRANSFORMS[m]
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    want = np.array([d[i : i + 3] @ g for i in range(m)])
    np.testing.assert_allclose(t.AT @ ((t.G @ g) * (t.BT @ d)), want, rtol=1e-13, atol=1e-13)


@st.composite
def _cases(draw):
    pad = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, 3 - 2 * pad), 9))
    W = draw(st.integers(max(1, 3 - 2 * pad), 9))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W), draw(st.integers(1, 3)), pad


@settings(max_examples=30, deadline=None)
@given(case=_cases(), m=st.sampled_from(sorted(TRANSFORMS)), seed=st.integers(0, 2**31 - 1))
def test_float64_equals_naive_on_odd_sizes_and_pads(case, m, seed):
    x_shape, F, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((F, x_shape[1], 3, 3))
    b = rng.standard_normal(F)
    cp = {"stride": 1, "pad": pad}
    ref, cache = conv_forward_naive(x, w, b, cp)
    out, wcache = winograd_forward(x.transpose(1, 2, 3, 0), w, b, pad, m)
    np.testing.assert_allclose(out.transpose(3, 0, 1, 2), ref, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(ref.shape)
    got = winograd_backward(np.ascontiguousarray(dout.transpose(1, 2, 3, 0)), wcache)
    dx, dw, db = conv_backward_naive(dout, cache)
    np.testing.assert_allclose(got[0].transpose(3, 0, 1, 2), dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1], dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[2], db, rtol=1e-10, atol=1e-10)


# Stated float32 accuracy: max error relative to the output's largest magnitude.
FLOAT32_TOLERANCE = {"winograd2": 2e-6, "winograd4": 2e-5}


@pytest.mark.parametrize("algorithm", sorted(FLOAT32_TOLERANCE))
@pytest.mark.parametrize(
    ("x_shape", "pad"), [((4, 16, 9, 11), 1), ((3, 32, 8, 8), 1), ((2, 16, 7, 6), 0)]
)
def test_float32_within_stated_tolerance_of_direct(algorithm, x_shape, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((8, x_shape[1], 3, 3)) / np.sqrt(9 * x_shape[1])
    b = rng.standard_normal(8)
    cp = {"stride": 1, "pad": pad}
    ref = conv_reference(x, w, b, 1, pad)
    f32 = [a.astype(np.float32) for a in (x, w, b)]
    out, cache = conv_forward_fast(*f32, {**cp, "algorithm": algorithm})
    assert out.dtype == np.float32
    tol = FLOAT32_TOLERANCE[algorithm]
    assert np.abs(out - ref).max() <= tol * np.abs(ref).max()
    dout = rng.standard_normal(ref.shape)
    _, ref_cache = conv_forward_fast(x, w, b, {**cp, "algorithm": "im2col"})
    for got, want in zip(
        conv_backward_fast(dout.astype(np.float32), cache),
        conv_backward_fast(dout, ref_cache),
        strict=True,
    ):
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= tol * np.abs(want).max()


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("algorithm", ["winograd2", "winograd4"])
def test_conv_fast_winograd_with_options_equals_naive(algorithm, recompute):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 7, 5))
    w = rng.standard_normal((5, 4, 3, 3))
    b = rng.standard_normal(5)
    cp = {"stride": 1, "pad": 1}
    ref, cache = conv_forward_naive(x, w, b, cp)
    out, fcache = conv_forward_fast(x, w, b, {**cp, "algorithm": algorithm, "recompute": recompute})
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(ref.shape)
    for got, want in zip(
        conv_backward_fast(dout, fcache), conv_backward_naive(dout, cache), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_winograd_refuses_what_it_cannot_do():
    x, w, b = np.ones((1, 2, 7, 7)), np.ones((1, 2, 3, 3)), np.ones(1)
    with pytest.raises(ValueError, match="conv_forward_fast.*3x3 filters and stride 1"):
        conv_forward_fast(x, w, b, {"stride": 2, "pad": 1, "algorithm": "winograd2"})
    with pytest.raises(ValueError, match="conv_forward_fast.*algorithm"):
        conv_forward_fast(x, w, b, {"stride": 1, "pad": 1, "algorithm": "fft"})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("shape", "pad", "m"), [((3, 7, 5, 2), 1, 4), ((2, 9, 11, 3), 0, 4), ((4, 6, 6, 5), 2, 4)]
)
def test_compiled_kernels_equal_the_numpy_path(shape, pad, m, dtype, monkeypatch):
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((3, shape[0], 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    results = []
    for flag in ("0", "1"):
        monkeypatch.setenv("NNDL_NUMBA", flag)
        out, cache = winograd_forward(x, w, b, pad, m)
        dout = np.random.default_rng(4).standard_normal(out.shape).astype(dtype)
        results.append((out, *winograd_backward(dout, cache)))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, c in zip(*results, strict=True):
        assert np.abs(a - c).max() <= tol * np.abs(a).max()


def test_numba_switch_falls_back_to_numpy(monkeypatch):
    from nndl.kernels import winograd

    monkeypatch.setenv("NNDL_NUMBA", "0")
    assert winograd.compiled_kernels(np.ones(3)) is None
    assert not winograd.compiled_available()


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_f4_in_chunks_of_one_tile_equals_the_numpy_path(recompute, dtype, monkeypatch):
    # One tile per chunk: every tile crosses a chunk boundary, so the overlapping input
    # gradients of neighbouring tiles are added across chunks.
    pytest.importorskip("numba")
    from nndl.kernels import winograd_compiled as _winograd_compiled

    monkeypatch.setattr(_winograd_compiled, "CHUNK_BYTES", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 9, 10, 2)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dout = rng.standard_normal((4, 9, 10, 2)).astype(dtype)
    results = []
    for flag in ("0", "1"):
        monkeypatch.setenv("NNDL_NUMBA", flag)
        out, cache = winograd_forward(x, w, b, 1, 4, recompute)
        results.append((out, *winograd_backward(dout, cache)))
    assert len(_winograd_compiled.tile_chunks(cache[0], x.dtype.itemsize)) == 9  # 3 x 3 tiles
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, c in zip(*results, strict=True):
        assert np.abs(a - c).max() <= tol * np.abs(a).max()
    assert winograd_backward(dout, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])
def test_compiled_f4_input_gradient_needs_no_zeroed_buffer(chunk_bytes, monkeypatch):
    # The padded input gradient is a reused scratch buffer that input_grad4 writes
    # whole (first tile writes, later tiles add): stale values in it must not leak,
    # whether the tiles come in chunks of one or all at once.
    pytest.importorskip("numba")
    from nndl.kernels import winograd_compiled as _winograd_compiled
    from nndl.kernels.scratch import scratch

    monkeypatch.setattr(_winograd_compiled, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 11, 9, 2))
    w = rng.standard_normal((4, 3, 3, 3))
    dout = rng.standard_normal((4, 11, 9, 2))
    monkeypatch.setenv("NNDL_NUMBA", "0")
    _, cache = winograd_forward(x, w, np.zeros(4), 1, 4, False)
    expected = winograd_backward(dout, cache)[0]
    monkeypatch.setenv("NNDL_NUMBA", "1")
    _, cache = winograd_forward(x, w, np.zeros(4), 1, 4, False)
    Hp, Wp = cache[0].padded
    scratch(np, "wino_dxp", (3, Hp, Wp, 2), np.float64)[...] = np.nan
    dx = winograd_backward(dout, cache)[0]
    assert np.isfinite(dx).all()
    assert np.abs(dx - expected).max() <= 1e-12 * np.abs(expected).max()
