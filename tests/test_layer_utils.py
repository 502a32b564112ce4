"""Tests for nndl.layer_utils: the fully connected sandwiches."""

from __future__ import annotations

import numpy as np
from _helpers import numeric_grads

from nndl.gradient_check import rel_error
from nndl.layer_utils import (
    affine_batchnorm_relu_backward,
    affine_batchnorm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)


def test_affine_relu_forward_is_the_composition():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3))
    w = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    out, _ = affine_relu_forward(x, w, b)
    np.testing.assert_allclose(out, np.maximum(x.reshape(4, 6) @ w + b, 0))


def test_affine_relu_backward_numerical_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((12, 10))
    b = rng.standard_normal(10)
    dout = rng.standard_normal((2, 10))
    _, cache = affine_relu_forward(x, w, b)
    grads = affine_relu_backward(dout, cache)
    nums = numeric_grads(lambda x, w, b: affine_relu_forward(x, w, b)[0], [x, w, b], dout)
    assert grads[0].shape == x.shape
    for g, n in zip(grads, nums, strict=True):
        assert rel_error(g, n) < 1e-8


def test_affine_batchnorm_relu_backward_numerical_gradient():
    rng = np.random.default_rng(2)
    N, D, M = 6, 4, 5
    x = rng.standard_normal((N, D))
    w = rng.standard_normal((D, M))
    b = rng.standard_normal(M)
    gamma = rng.standard_normal(M)
    beta = rng.standard_normal(M)
    dout = rng.standard_normal((N, M))
    _, cache = affine_batchnorm_relu_forward(x, w, b, gamma, beta, {"mode": "train"})
    grads = affine_batchnorm_relu_backward(dout, cache)

    def forward(x, w, b, gamma, beta):
        return affine_batchnorm_relu_forward(x, w, b, gamma, beta, {"mode": "train"})[0]

    nums = numeric_grads(forward, [x, w, b, gamma, beta], dout)
    for name, g, n in zip(("dx", "dw", "db", "dgamma", "dbeta"), grads, nums, strict=True):
        assert g.shape == n.shape, name
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-9, err_msg=name)
    # Batch norm removes the bias entirely: its gradient is zero.
    np.testing.assert_allclose(grads[2], 0, atol=1e-12)


def test_affine_batchnorm_relu_updates_running_stats_and_test_mode():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3))
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(4)
    gamma, beta = np.ones(4), np.zeros(4)
    bn_param = {"mode": "train"}
    out, _ = affine_batchnorm_relu_forward(x, w, b, gamma, beta, bn_param)
    a = x @ w + b
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * a.mean(axis=0))
    np.testing.assert_allclose(bn_param["running_var"], 0.1 * a.var(axis=0))
    np.testing.assert_allclose(out, np.maximum((a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5), 0))

    bn_param["mode"] = "test"
    out_test, _ = affine_batchnorm_relu_forward(x, w, b, gamma, beta, bn_param)
    expected = np.maximum(
        (a - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + 1e-5), 0
    )
    np.testing.assert_allclose(out_test, expected)


def test_sandwiches_keep_float32():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = np.zeros(5, dtype=np.float32)
    out, cache = affine_relu_forward(x, w, b)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in affine_relu_backward(np.ones_like(out), cache))
    g, bt = np.ones(5, dtype=np.float32), np.zeros(5, dtype=np.float32)
    out, cache = affine_batchnorm_relu_forward(x, w, b, g, bt, {"mode": "train"})
    assert out.dtype == np.float32
    grads = affine_batchnorm_relu_backward(np.ones_like(out), cache)
    assert all(d.dtype == np.float32 for d in grads)
