"""The fast conv and pool layers equal the naive ones, in every configuration and dtype."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import conv_configs, pool_configs
from hypothesis import given, settings
from hypothesis import strategies as st

from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from nndl.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from nndl.gradient_check import rel_error


def _rel(a, b) -> float:
    """rel_error, but 0 for two all-zero arrays (a kernel that only sees padding)."""
    return 0.0 if not np.any(a) and not np.any(b) else rel_error(a, b)


def _conv_case(seed, x_shape, w_shape, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return rng, x, w, b


@settings(max_examples=40, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**31 - 1))
def test_conv_fast_equals_naive(cfg, seed):
    x_shape, w_shape, stride, pad = cfg
    rng, x, w, b = _conv_case(seed, x_shape, w_shape)
    cp = {"stride": stride, "pad": pad}
    out_n, cache_n = conv_forward_naive(x, w, b, cp)
    out_f, cache_f = conv_forward_fast(x, w, b, cp)
    assert out_f.shape == out_n.shape
    assert _rel(out_n, out_f) <= 1e-10
    dout = rng.standard_normal(out_n.shape)
    for g_n, g_f in zip(
        conv_backward_naive(dout, cache_n), conv_backward_fast(dout, cache_f), strict=True
    ):
        assert g_f.shape == g_n.shape
        assert _rel(g_n, g_f) <= 1e-10


@settings(max_examples=40, deadline=None)
@given(cfg=pool_configs(), seed=st.integers(0, 2**31 - 1))
def test_pool_fast_equals_naive(cfg, seed):
    x_shape, PH, PW, stride = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    pp = {"pool_height": PH, "pool_width": PW, "stride": stride}
    out_n, cache_n = max_pool_forward_naive(x, pp)
    out_f, cache_f = max_pool_forward_fast(x, pp)
    assert out_f.shape == out_n.shape
    assert _rel(out_n, out_f) <= 1e-10
    dout = rng.standard_normal(out_n.shape)
    dx_f = max_pool_backward_fast(dout, cache_f)
    assert dx_f.shape == x.shape
    assert _rel(max_pool_backward_naive(dout, cache_n), dx_f) <= 1e-10


@settings(max_examples=25, deadline=None)
@given(cfg=pool_configs(), seed=st.integers(0, 2**31 - 1), levels=st.integers(1, 3))
def test_pool_ties_route_to_the_same_element_as_naive(cfg, seed, levels):
    # Values from a handful of levels make most windows hold several equal maxima.
    x_shape, PH, PW, stride = cfg
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=x_shape).astype(np.float64)
    pp = {"pool_height": PH, "pool_width": PW, "stride": stride}
    # Integer gradients keep overlapping-window sums exact, so any routing difference shows.
    dout = rng.integers(1, 1000, size=max_pool_forward_naive(x, pp)[0].shape).astype(float)
    dx_n = max_pool_backward_naive(dout, max_pool_forward_naive(x, pp)[1])
    dx_f = max_pool_backward_fast(dout, max_pool_forward_fast(x, pp)[1])
    np.testing.assert_array_equal(dx_f, dx_n)


def test_pool_tie_goes_to_first_maximum_in_row_major_order():
    x = np.zeros((1, 1, 2, 2))
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dx = max_pool_backward_fast(np.ones((1, 1, 1, 1)), max_pool_forward_fast(x, pp)[1])
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 0.0], [0.0, 0.0]])


CONV_SHAPES = [
    ((3, 3, 9, 9), (4, 3, 3, 3), 2, 1),
    ((2, 2, 7, 8), (3, 2, 2, 3), 1, 2),
    ((2, 3, 8, 8), (2, 3, 5, 5), 3, 3),
]


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "pad"), CONV_SHAPES)
def test_conv_float32_stays_float32_and_close_to_float64(x_shape, w_shape, stride, pad):
    rng, x, w, b = _conv_case(1, x_shape, w_shape)
    cp = {"stride": stride, "pad": pad}
    out64, cache64 = conv_forward_fast(x, w, b, cp)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    out32, cache32 = conv_forward_fast(x32, w32, b32, cp)
    assert out32.dtype == np.float32
    assert rel_error(out64, out32) < 1e-4
    dout = rng.standard_normal(out64.shape)
    grads64 = conv_backward_fast(dout, cache64)
    grads32 = conv_backward_fast(dout.astype(np.float32), cache32)
    for g64, g32 in zip(grads64, grads32, strict=True):
        assert g32.dtype == np.float32
        assert np.allclose(g32, g64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("PH", "PW", "stride"), [(2, 2, 2), (3, 3, 2), (2, 3, 1)])
def test_pool_float32_stays_float32(PH, PW, stride):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 2 * stride + PH, 3 * stride + PW))
    pp = {"pool_height": PH, "pool_width": PW, "stride": stride}
    out64, cache64 = max_pool_forward_fast(x, pp)
    out32, cache32 = max_pool_forward_fast(x.astype(np.float32), pp)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-6)
    dout = rng.standard_normal(out64.shape)
    dx32 = max_pool_backward_fast(dout.astype(np.float32), cache32)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, max_pool_backward_fast(dout, cache64), rtol=1e-6)


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "pad"), CONV_SHAPES)
@pytest.mark.parametrize(
    "options",
    [
        {"recompute": True},
        {"col_buffer_bytes": 1},  # one sample per chunk
        {"col_buffer_bytes": 2 * 5 * 75 * 8},  # chunks that do not divide N
        {"recompute": True, "col_buffer_bytes": 1},
    ],
)
def test_conv_recompute_and_chunks_equal_default(x_shape, w_shape, stride, pad, options):
    rng, x, w, b = _conv_case(3, (5,) + x_shape[1:], w_shape)
    cp = {"stride": stride, "pad": pad}
    out, cache = conv_forward_fast(x, w, b, cp)
    out_o, cache_o = conv_forward_fast(x, w, b, {**cp, **options})
    np.testing.assert_allclose(out_o, out, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    for g, g_o in zip(
        conv_backward_fast(dout, cache), conv_backward_fast(dout, cache_o), strict=True
    ):
        np.testing.assert_allclose(g_o, g, rtol=1e-12, atol=1e-12)


def _col_buffers(cache, x) -> list[np.ndarray]:
    """The arrays larger than x that a conv cache holds (columns, transformed input)."""
    found = []
    for item in cache:
        if isinstance(item, tuple):
            found += _col_buffers(item, x)
        elif isinstance(item, np.ndarray) and item.size > x.size:
            found.append(item)
    return found


@pytest.mark.parametrize("algorithm", ["im2col", "winograd2", "winograd4"])
def test_conv_cache_holds_at_most_one_column_buffer_and_none_when_recomputing(algorithm):
    _, x, w, b = _conv_case(4, (4, 3, 8, 8), (5, 3, 3, 3))
    cp = {"stride": 1, "pad": 1, "algorithm": algorithm}
    assert len(_col_buffers(conv_forward_fast(x, w, b, cp)[1], x)) == 1
    assert _col_buffers(conv_forward_fast(x, w, b, {**cp, "recompute": True})[1], x) == []
    if algorithm == "im2col":  # a chunked batch cannot cache every chunk's columns
        assert _col_buffers(conv_forward_fast(x, w, b, {**cp, "col_buffer_bytes": 1})[1], x) == []


def test_conv_backward_leaves_cache_usable_twice():
    rng, x, w, b = _conv_case(5, (2, 2, 5, 5), (3, 2, 3, 3))
    for options in ({}, {"recompute": True}):
        out, cache = conv_forward_fast(x, w, b, {"stride": 1, "pad": 1, **options})
        dout = rng.standard_normal(out.shape)
        first = conv_backward_fast(dout, cache)
        for g1, g2 in zip(first, conv_backward_fast(dout, cache), strict=True):
            np.testing.assert_array_equal(g1, g2)


def test_fast_layers_do_not_mutate_inputs():
    rng, x, w, b = _conv_case(6, (2, 3, 6, 6), (4, 3, 3, 3))
    copies = [a.copy() for a in (x, w, b)]
    out, cache = conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    dout = rng.standard_normal(out.shape)
    dout_copy = dout.copy()
    conv_backward_fast(dout, cache)
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    pout, pcache = max_pool_forward_fast(x, pp)
    pd = rng.standard_normal(pout.shape)
    pd_copy = pd.copy()
    max_pool_backward_fast(pd, pcache)
    for a, c in zip((x, w, b, dout, pd), (*copies, dout_copy, pd_copy), strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"recompute": "yes"}, TypeError, ("recompute", "bool")),
        ({"col_buffer_bytes": 0}, ValueError, ("col_buffer_bytes", ">= 1")),
        ({"col_buffer_bytes": 1.5}, TypeError, ("col_buffer_bytes", "int")),
    ],
)
def test_conv_bad_options_raise_clear_errors(options, error, words):
    _, x, w, b = _conv_case(7, (1, 1, 4, 4), (1, 1, 3, 3))
    with pytest.raises(error) as info:
        conv_forward_fast(x, w, b, {"stride": 1, "pad": 1, **options})
    message = str(info.value)
    assert message.startswith("conv_forward_fast")
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("fast", "naive", "args"),
    [
        (
            conv_forward_fast,
            conv_forward_naive,
            (np.ones((1, 2, 5, 5)), np.ones((1, 2, 2, 2)), np.ones(1), {"stride": 2, "pad": 0}),
        ),
        (
            conv_forward_fast,
            conv_forward_naive,
            (np.ones((1, 3, 5, 5)), np.ones((1, 2, 3, 3)), np.ones(1), {"stride": 1, "pad": 0}),
        ),
        (
            max_pool_forward_fast,
            max_pool_forward_naive,
            (np.ones((1, 1, 5, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2}),
        ),
        (
            max_pool_forward_fast,
            max_pool_forward_naive,
            (
                np.ones((1, 1, 4, 4), dtype=np.int64),
                {"pool_height": 2, "pool_width": 2, "stride": 2},
            ),
        ),
    ],
)
def test_bad_inputs_raise_the_same_errors_as_naive(fast, naive, args):
    with pytest.raises((ValueError, TypeError)) as naive_info:
        naive(*args)
    with pytest.raises(type(naive_info.value)) as fast_info:
        fast(*args)
    name_n, name_f = naive.__name__, fast.__name__
    assert str(fast_info.value) == str(naive_info.value).replace(name_n, name_f)


def test_wrong_dout_shape_raises():
    _, x, w, b = _conv_case(8, (2, 2, 4, 4), (3, 2, 3, 3))
    _, cache = conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    with pytest.raises(ValueError, match="conv_backward_fast"):
        conv_backward_fast(np.ones((2, 3, 4, 5)), cache)
    _, pcache = max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ValueError, match="max_pool_backward_fast"):
        max_pool_backward_fast(np.ones((2, 2, 2, 3)), pcache)


@pytest.mark.parametrize("options", [{}, {"recompute": True}, {"col_buffer_bytes": 1}])
def test_interleaved_calls_do_not_clobber_each_other(options):
    # Temporaries live in reused scratch buffers; outputs and caches must not.
    rng = np.random.default_rng(9)
    cp = {"stride": 1, "pad": 1, **options}
    pp = {"pool_height": 3, "pool_width": 3, "stride": 2}
    layers = []
    for _ in range(2):
        x = rng.standard_normal((3, 2, 7, 7))
        w = rng.standard_normal((4, 2, 3, 3))
        b = rng.standard_normal(4)
        out, cache = conv_forward_fast(x, w, b, cp)
        pout, pcache = max_pool_forward_fast(out, pp)
        layers.append((x, w, b, out, cache, pout, pcache))
    for x, w, b, out, cache, pout, pcache in reversed(layers):
        ref, ref_cache = conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})
        assert rel_error(out, ref) <= 1e-10
        pref, pref_cache = max_pool_forward_naive(ref, pp)
        assert rel_error(pout, pref) <= 1e-10
        dp = rng.standard_normal(pout.shape)
        dout = max_pool_backward_fast(dp, pcache)
        assert rel_error(dout, max_pool_backward_naive(dp, pref_cache)) <= 1e-10
        grads = conv_backward_fast(dout, cache)
        for g, g_ref in zip(grads, conv_backward_naive(dout, ref_cache), strict=True):
            assert rel_error(g, g_ref) <= 1e-10
