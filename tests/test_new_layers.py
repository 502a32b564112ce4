"""Tests for the layers of the modern recipe: GELU, the residual add, label smoothing,
average and global pooling (naive and fast).

Backward passes against numerical gradients in float64; forward passes against formulas
written here (``sliding_window_view`` windows, explicit smoothed targets); the fast
pooling against the naive reference, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import distinct_values, numeric_grads, pool_configs
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from nndl.conv_layers import (
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    global_avg_pool_backward,
    global_avg_pool_forward,
    global_max_pool_backward,
    global_max_pool_forward,
)
from nndl.gradient_check import eval_numerical_gradient, rel_error
from nndl.kernels.pool import (
    avg_pool_backward_fast,
    avg_pool_forward_fast,
    global_avg_pool_backward_fast,
    global_avg_pool_forward_fast,
    global_max_pool_backward_fast,
    global_max_pool_forward_fast,
)
from nndl.layers import add_backward, add_forward, gelu_backward, gelu_forward, softmax_loss

AVG_IMPLS = [
    pytest.param(avg_pool_forward_naive, avg_pool_backward_naive, id="naive"),
    pytest.param(avg_pool_forward_fast, avg_pool_backward_fast, id="fast"),
]
GAP_IMPLS = [
    pytest.param(global_avg_pool_forward, global_avg_pool_backward, id="naive"),
    pytest.param(global_avg_pool_forward_fast, global_avg_pool_backward_fast, id="fast"),
]
GMP_IMPLS = [
    pytest.param(global_max_pool_forward, global_max_pool_backward, id="naive"),
    pytest.param(global_max_pool_forward_fast, global_max_pool_backward_fast, id="fast"),
]


# --- GELU --------------------------------------------------------------------------------


def test_gelu_forward_formula_and_limits():
    x = np.array([-30.0, -1.0, 0.0, 0.5, 2.0, 30.0])
    out, _ = gelu_forward(x)
    k = np.sqrt(2 / np.pi)
    expected = 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(out, expected, rtol=1e-15)
    # GELU(x) ~ x for large x and ~ 0 for very negative x; GELU(0) = 0.
    assert out[2] == 0 and np.isclose(out[-1], 30) and abs(out[0]) < 1e-12
    # Close to the exact x * Phi(x): Phi(1) = 0.841344746..., Phi(-1) = 0.158655254...
    assert abs(out[1] - (-0.158655254)) < 1e-3


def test_gelu_backward_numerical_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)) * 2
    dout = rng.standard_normal(x.shape)
    out, cache = gelu_forward(x)
    dx = gelu_backward(dout, cache)
    (num,) = numeric_grads(lambda x: gelu_forward(x)[0], [x], dout)
    # GELU's slope crosses zero near x = -0.75, where a relative error means nothing.
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-9)


def test_gelu_keeps_float32_and_does_not_modify_input():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 12)
    x0 = x.copy()
    out, cache = gelu_forward(x)
    assert out.dtype == np.float32 and gelu_backward(np.ones_like(out), cache).dtype == np.float32
    assert np.array_equal(x, x0)


# --- residual add ------------------------------------------------------------------------


def test_add_forward_backward():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    out, cache = add_forward(a, b)
    np.testing.assert_array_equal(out, a + b)
    dout = rng.standard_normal(out.shape)
    da, db = add_backward(dout, cache)
    num_a, num_b = numeric_grads(lambda a, b: add_forward(a, b)[0], [a, b], dout)
    assert rel_error(da, num_a) < 1e-9 and rel_error(db, num_b) < 1e-9


def test_add_refuses_broadcasting_and_wrong_dout():
    with pytest.raises(ValueError, match=r"add_forward: expected b to have the shape of a"):
        add_forward(np.zeros((2, 3)), np.zeros((1, 3)))
    _, cache = add_forward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"add_backward: expected dout of shape \(2, 3\)"):
        add_backward(np.zeros((3, 2)), cache)


# --- label smoothing ---------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.1, 0.2, 1.0])
def test_label_smoothing_value_and_gradient(eps):
    rng = np.random.default_rng(2)
    N, C = 6, 5
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, size=N)
    loss, dx = softmax_loss(x, y, label_smoothing=eps)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    target = np.full((N, C), eps / C)
    target[np.arange(N), y] += 1 - eps
    assert np.isclose(loss, -(target * log_p).sum() / N)
    np.testing.assert_allclose(dx, (np.exp(log_p) - target) / N, atol=1e-15)
    num = eval_numerical_gradient(
        lambda x: softmax_loss(x, y, label_smoothing=eps)[0], x, verbose=False
    )
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-10)


def test_label_smoothing_zero_is_the_two_argument_call():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 7)).astype(np.float32), np.array([0, 6, 3, 3])
    loss, dx = softmax_loss(x, y)
    loss0, dx0 = softmax_loss(x, y, label_smoothing=0.0)
    assert loss == loss0 and np.array_equal(dx, dx0) and dx0.dtype == np.float32


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.1", True, None])
def test_label_smoothing_bad_values(bad):
    with pytest.raises(ValueError, match=r"softmax_loss: expected label_smoothing in \[0, 1\]"):
        softmax_loss(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=bad)


# --- average pooling ---------------------------------------------------------------------


def avg_pool_reference(x, PH, PW, stride):
    windows = sliding_window_view(x, (PH, PW), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.mean(axis=(4, 5))


@pytest.mark.parametrize("forward, backward", AVG_IMPLS)
@settings(max_examples=25, deadline=None)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_avg_pool_forward_reference_and_backward_numerical(forward, backward, cfg, seed):
    x_shape, PH, PW, stride = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    pool_param = {"pool_height": PH, "pool_width": PW, "stride": stride}
    out, cache = forward(x, pool_param)
    np.testing.assert_allclose(out, avg_pool_reference(x, PH, PW, stride), atol=1e-14)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    (num,) = numeric_grads(lambda x: forward(x, pool_param)[0], [x], dout)
    assert dx.shape == x.shape and rel_error(dx, num) < 1e-8


@settings(max_examples=25, deadline=None)
@given(cfg=pool_configs(max_out=4, max_window=4), seed=st.integers(0, 2**16))
def test_avg_pool_fast_equals_naive(cfg, seed):
    x_shape, PH, PW, stride = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    pool_param = {"pool_height": PH, "pool_width": PW, "stride": stride}
    out_n, cache_n = avg_pool_forward_naive(x, pool_param)
    out_f, cache_f = avg_pool_forward_fast(x, pool_param)
    assert rel_error(out_n, out_f) < 1e-10
    dout = rng.standard_normal(out_n.shape)
    assert (
        rel_error(avg_pool_backward_naive(dout, cache_n), avg_pool_backward_fast(dout, cache_f))
        < 1e-10
    )


@pytest.mark.parametrize("forward, backward", AVG_IMPLS)
def test_avg_pool_float32(forward, backward):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.dtype == np.float32 and backward(np.ones_like(out), cache).dtype == np.float32
    assert out[0, 0, 0, 0] == np.mean([0, 1, 4, 5])


# --- global pooling ----------------------------------------------------------------------


@pytest.mark.parametrize("forward, backward", GAP_IMPLS)
def test_global_avg_pool(forward, backward):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 5))
    out, cache = forward(x)
    np.testing.assert_allclose(out, x.reshape(3, 2, -1).mean(axis=2), atol=1e-15)
    dout = rng.standard_normal(out.shape)
    (num,) = numeric_grads(lambda x: forward(x)[0], [x], dout)
    assert rel_error(backward(dout, cache), num) < 1e-9


@pytest.mark.parametrize("forward, backward", GMP_IMPLS)
def test_global_max_pool(forward, backward):
    rng = np.random.default_rng(5)
    x = distinct_values(rng, (3, 2, 4, 5))
    out, cache = forward(x)
    np.testing.assert_array_equal(out, x.reshape(3, 2, -1).max(axis=2))
    dout = rng.standard_normal(out.shape)
    (num,) = numeric_grads(lambda x: forward(x)[0], [x], dout)
    assert rel_error(backward(dout, cache), num) < 1e-9


@pytest.mark.parametrize("forward, backward", GMP_IMPLS)
def test_global_max_pool_tie_goes_to_first_maximum_in_row_major_order(forward, backward):
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 2] = x[0, 0, 2, 0] = 5.0  # tie: (1, 2) comes first in row-major order
    _, cache = forward(x)
    dx = backward(np.array([[7.0]]), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 2] = 7.0
    np.testing.assert_array_equal(dx, expected)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    levels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_global_pools_fast_equal_naive_with_ties(shape, levels, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=shape).astype(np.float64)  # many ties
    dout = rng.standard_normal(shape[:2])
    for fwd_n, bwd_n, fwd_f, bwd_f in (
        (global_max_pool_forward, global_max_pool_backward,
         global_max_pool_forward_fast, global_max_pool_backward_fast),
        (global_avg_pool_forward, global_avg_pool_backward,
         global_avg_pool_forward_fast, global_avg_pool_backward_fast),
    ):  # fmt: skip
        out_n, cache_n = fwd_n(x)
        out_f, cache_f = fwd_f(x)
        assert rel_error(out_n, out_f) < 1e-12
        assert rel_error(bwd_n(dout, cache_n), bwd_f(dout, cache_f)) < 1e-12


@pytest.mark.parametrize(
    "forward", [global_avg_pool_forward, global_avg_pool_forward_fast,
                global_max_pool_forward, global_max_pool_forward_fast]
)  # fmt: skip
def test_global_pools_bad_inputs(forward):
    name = forward.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected x with 4 dimensions"):
        forward(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match=rf"{name}: expected x to be a floating point"):
        forward(np.zeros((2, 3, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=rf"{name}: expected H and W >= 1"):
        forward(np.zeros((2, 3, 0, 4)))


@pytest.mark.parametrize("forward, backward", [*AVG_IMPLS])
def test_avg_pool_bad_inputs(forward, backward):
    name = forward.__name__
    x = np.zeros((1, 1, 5, 5))
    with pytest.raises(ValueError, match=rf"{name}: output size is not a whole number"):
        forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ValueError, match=rf"{name}: pool_param is missing the key 'stride'"):
        forward(x, {"pool_height": 2, "pool_width": 2})
    _, cache = forward(np.zeros((1, 1, 4, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ValueError, match=rf"{backward.__name__}: expected dout of shape"):
        backward(np.zeros((1, 1, 3, 2)), cache)


@pytest.mark.parametrize("forward, backward", [*GAP_IMPLS, *GMP_IMPLS])
def test_global_pool_backward_wrong_dout(forward, backward):
    _, cache = forward(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match=rf"{backward.__name__}: expected dout of shape \(2, 3\)"):
        backward(np.zeros((3, 2)), cache)
