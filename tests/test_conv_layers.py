"""Tests for nndl.conv_layers: naive conv, max pool and spatial batch norm.

Forward passes are checked against SPEC's reference values and against an independent
``sliding_window_view`` + ``einsum`` formulation (tests/_helpers.py); backward passes
against numerical gradients in float64. The fast layers run through the same property
tests, so both stay equal to the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    conv_configs,
    conv_reference,
    distinct_values,
    numeric_grads,
    pool_configs,
    pool_reference,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from nndl.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from nndl.gradient_check import rel_error
from nndl.layers import batchnorm_forward

CONV_IMPLS = [
    pytest.param(conv_forward_naive, conv_backward_naive, id="naive"),
    pytest.param(conv_forward_fast, conv_backward_fast, id="fast"),
]
POOL_IMPLS = [
    pytest.param(max_pool_forward_naive, max_pool_backward_naive, id="naive"),
    pytest.param(max_pool_forward_fast, max_pool_backward_fast, id="fast"),
]


# --- SPEC reference values ---------------------------------------------------------------


def test_conv_forward_matches_spec_reference():
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    correct = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    assert out.shape == correct.shape
    assert rel_error(out, correct) < 1e-7


def test_max_pool_forward_matches_spec_reference():
    x = np.linspace(-0.3, 0.4, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    out, _ = max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    correct = np.array(
        [
            [
                [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]],
            ],
            [
                [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                [[0.32631579, 0.34105263], [0.38526316, 0.4]],
            ],
        ]
    )
    assert out.shape == correct.shape
    assert rel_error(out, correct) < 1e-7


# --- numerical gradients at SPEC's shapes and tolerances ---------------------------------


def test_conv_backward_naive_numerical_gradient():
    rng = np.random.default_rng(231)
    x = rng.standard_normal((4, 3, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    b = rng.standard_normal(2)
    conv_param = {"stride": 1, "pad": 1}
    dout = rng.standard_normal((4, 2, 5, 5))
    _, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    dx_num, dw_num, db_num = numeric_grads(
        lambda x, w, b: conv_forward_naive(x, w, b, conv_param)[0], [x, w, b], dout
    )
    # SPEC: around 1e-9 for dx and dw.
    assert rel_error(dx, dx_num) < 1e-8
    assert rel_error(dw, dw_num) < 1e-8
    assert rel_error(db, db_num) < 1e-8


def test_max_pool_backward_naive_numerical_gradient():
    rng = np.random.default_rng(231)
    x = rng.standard_normal((3, 2, 8, 8))
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dout = rng.standard_normal((3, 2, 4, 4))
    _, cache = max_pool_forward_naive(x, pool_param)
    dx = max_pool_backward_naive(dout, cache)
    (dx_num,) = numeric_grads(lambda x: max_pool_forward_naive(x, pool_param)[0], [x], dout)
    # SPEC: around 1e-12.
    assert rel_error(dx, dx_num) < 1e-10


def test_spatial_batchnorm_backward_numerical_gradient():
    rng = np.random.default_rng(231)
    N, C, H, W = 2, 3, 4, 5
    x = 5 * rng.standard_normal((N, C, H, W)) + 12
    gamma = rng.standard_normal(C)
    beta = rng.standard_normal(C)
    dout = rng.standard_normal((N, C, H, W))
    bn_param = {"mode": "train"}
    _, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = spatial_batchnorm_backward(dout, cache)

    def forward(x, gamma, beta):
        return spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})[0]

    dx_num, dgamma_num, dbeta_num = numeric_grads(forward, [x, gamma, beta], dout)
    # SPEC: dx around 1e-8, dgamma and dbeta around 1e-11.
    assert rel_error(dx, dx_num) < 1e-7
    assert rel_error(dgamma, dgamma_num) < 1e-9
    assert rel_error(dbeta, dbeta_num) < 1e-9


# --- property tests: every stride, pad, non-square shape, batch of one -------------------


@pytest.mark.parametrize(("forward", "backward"), CONV_IMPLS)
@settings(max_examples=20, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1))
def test_conv_matches_reference_and_numerical_gradient(forward, backward, cfg, seed):
    x_shape, w_shape, stride, pad = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    conv_param = {"stride": stride, "pad": pad}

    out, cache = forward(x, w, b, conv_param)
    expected = conv_reference(x, w, b, stride, pad)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)

    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    # Differentiate the independent reference: cheaper than the naive loops and
    # equal to the layer's forward, as just asserted.
    dx_num, dw_num, db_num = numeric_grads(
        lambda x, w, b: conv_reference(x, w, b, stride, pad), [x, w, b], dout
    )
    np.testing.assert_allclose(dx, dx_num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, dw_num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, db_num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("forward", "backward"), POOL_IMPLS)
@settings(max_examples=20, deadline=None)
@given(cfg=pool_configs(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_matches_reference_and_numerical_gradient(forward, backward, cfg, seed):
    x_shape, PH, PW, stride = cfg
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, x_shape)
    pool_param = {"pool_height": PH, "pool_width": PW, "stride": stride}

    out, cache = forward(x, pool_param)
    expected = pool_reference(x, PH, PW, stride)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)

    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    (dx_num,) = numeric_grads(lambda x: pool_reference(x, PH, PW, stride), [x], dout)
    np.testing.assert_allclose(dx, dx_num, rtol=1e-8, atol=1e-10)
    # Every output sends its whole gradient to one input, overlapping windows included.
    assert np.isclose(dx.sum(), dout.sum())


@pytest.mark.parametrize(("forward", "backward"), CONV_IMPLS)
def test_conv_non_square_batch_of_one_explicit(forward, backward):
    """Batch of one, stride 3, pad 2, a 2x3 kernel on a 7x5 image: out (1, 3, 4, 3)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 5))
    w = rng.standard_normal((3, 2, 2, 3))
    b = rng.standard_normal(3)
    out, cache = forward(x, w, b, {"stride": 3, "pad": 2})
    assert out.shape == (1, 3, 1 + (7 + 4 - 2) // 3, 1 + (5 + 4 - 3) // 3)
    np.testing.assert_allclose(out, conv_reference(x, w, b, 3, 2), rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    nums = numeric_grads(lambda x, w, b: conv_reference(x, w, b, 3, 2), [x, w, b], dout)
    for g, n in zip(grads, nums, strict=True):
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("forward", "backward"), CONV_IMPLS)
def test_conv_single_output_pixel_is_dot_product(forward, backward):
    """Kernel covering the whole padded-free input: each output is a plain dot product."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3, 5))
    w = rng.standard_normal((4, 2, 3, 5))
    b = rng.standard_normal(4)
    out, _ = forward(x, w, b, {"stride": 1, "pad": 0})
    assert out.shape == (1, 4, 1, 1)
    np.testing.assert_allclose(out[0, :, 0, 0], w.reshape(4, -1) @ x.reshape(-1) + b)


@pytest.mark.parametrize(("forward", "backward"), POOL_IMPLS)
def test_max_pool_ties_route_gradient_to_first_maximum(forward, backward):
    """Constant input: all window entries tie; each output's gradient goes to one input,
    the window's first element in row-major order."""
    x = np.ones((1, 1, 5, 5))
    pool_param = {"pool_height": 3, "pool_width": 3, "stride": 2}
    out, cache = forward(x, pool_param)
    dout = np.arange(1.0, 1.0 + out.size).reshape(out.shape)
    dx = backward(dout, cache)
    expected = np.zeros_like(x)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            expected[0, 0, 2 * i, 2 * j] += dout[0, 0, i, j]
    np.testing.assert_array_equal(dx, expected)


# --- spatial batch norm ------------------------------------------------------------------


def test_spatial_batchnorm_normalises_each_channel_over_n_h_w():
    rng = np.random.default_rng(3)
    N, C, H, W = 4, 3, 5, 6
    scales = np.array([1.0, 10.0, 0.1])[None, :, None, None]
    shifts = np.array([-3.0, 7.0, 100.0])[None, :, None, None]
    x = rng.standard_normal((N, C, H, W)) * scales + shifts
    out, _ = spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-3)

    gamma = np.array([2.0, 0.5, 3.0])
    beta = np.array([1.0, -1.0, 0.0])
    out2, _ = spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out2.mean(axis=(0, 2, 3)), beta, atol=1e-10)
    np.testing.assert_allclose(out2.std(axis=(0, 2, 3)), gamma, rtol=1e-3)


def test_spatial_batchnorm_equals_batchnorm_over_flattened_positions():
    """Independent formulation: move channels last, flatten N*H*W rows, batchnorm."""
    rng = np.random.default_rng(4)
    N, C, H, W = 2, 3, 4, 5
    x = rng.standard_normal((N, C, H, W)) * 3 + 1
    gamma = rng.standard_normal(C)
    beta = rng.standard_normal(C)
    p_sbn = {"mode": "train", "momentum": 0.8}
    p_bn = {"mode": "train", "momentum": 0.8}
    out, _ = spatial_batchnorm_forward(x, gamma, beta, p_sbn)
    flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out_bn, _ = batchnorm_forward(flat, gamma, beta, p_bn)
    np.testing.assert_allclose(out, out_bn.reshape(N, H, W, C).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(p_sbn["running_mean"], p_bn["running_mean"])
    np.testing.assert_allclose(p_sbn["running_var"], p_bn["running_var"])
    assert p_sbn["running_mean"].shape == (C,)

    # Test mode with the same running statistics agrees too.
    p_sbn["mode"] = p_bn["mode"] = "test"
    x2 = rng.standard_normal((N, C, H, W))
    out_t, _ = spatial_batchnorm_forward(x2, gamma, beta, p_sbn)
    out_bn_t, _ = batchnorm_forward(x2.transpose(0, 2, 3, 1).reshape(-1, C), gamma, beta, p_bn)
    np.testing.assert_allclose(out_t, out_bn_t.reshape(N, H, W, C).transpose(0, 3, 1, 2))


def test_spatial_batchnorm_running_statistics_and_test_mode():
    rng = np.random.default_rng(5)
    C = 2
    bn_param = {"mode": "train", "momentum": 0.7, "eps": 1e-5}
    running_mean = np.zeros(C)
    running_var = np.zeros(C)
    for _ in range(3):
        x = rng.standard_normal((3, C, 2, 4)) * 2 + 5
        spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), bn_param)
        running_mean = 0.7 * running_mean + 0.3 * x.mean(axis=(0, 2, 3))
        running_var = 0.7 * running_var + 0.3 * x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn_param["running_mean"], running_mean)
    np.testing.assert_allclose(bn_param["running_var"], running_var)

    bn_param["mode"] = "test"
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    x = rng.standard_normal((2, C, 3, 3))
    out, _ = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    expected = (x - running_mean[None, :, None, None]) / np.sqrt(
        running_var[None, :, None, None] + 1e-5
    ) * gamma[None, :, None, None] + beta[None, :, None, None]
    np.testing.assert_allclose(out, expected)
    # Test mode leaves the running statistics alone.
    np.testing.assert_allclose(bn_param["running_mean"], running_mean)


# --- dtype -------------------------------------------------------------------------------


@pytest.mark.parametrize(("forward", "backward"), CONV_IMPLS)
def test_conv_keeps_float32(forward, backward):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    out, cache = forward(x, w, b, {"stride": 2, "pad": 1})
    assert out.dtype == np.float32
    grads = backward(np.ones_like(out), cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    np.testing.assert_allclose(out, conv_reference(x, w, b, 2, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("forward", "backward"), POOL_IMPLS)
def test_max_pool_keeps_float32(forward, backward):
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out, cache = forward(x, {"pool_height": 3, "pool_width": 2, "stride": 1})
    assert out.dtype == np.float32
    assert backward(np.ones_like(out), cache).dtype == np.float32


def test_spatial_batchnorm_keeps_float32():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    gamma = np.ones(3, dtype=np.float32)
    beta = np.zeros(3, dtype=np.float32)
    bn_param = {"mode": "train"}
    out, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    assert out.dtype == np.float32
    assert bn_param["running_mean"].dtype == np.float32
    assert bn_param["running_var"].dtype == np.float32
    grads = spatial_batchnorm_backward(np.ones_like(out), cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    bn_param["mode"] = "test"
    assert spatial_batchnorm_forward(x, gamma, beta, bn_param)[0].dtype == np.float32
