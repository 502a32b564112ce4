"""Tests for nndl.layers: affine, relu, batch norm, dropout, softmax and SVM losses.

Backward passes are checked against numerical gradients in float64; forward passes
against direct formulas written here; batch norm's running statistics against the
SPEC formula; dropout's randomness against NumPy's global random state.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numeric_grads

from nndl.gradient_check import eval_numerical_gradient, rel_error
from nndl.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
    softmax_loss,
    svm_loss,
)

# --- affine ------------------------------------------------------------------------------


def test_affine_forward_flattens_each_row():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4, 5))
    w = rng.standard_normal((40, 6))
    b = rng.standard_normal(6)
    out, _ = affine_forward(x, w, b)
    expected = np.array([[row.ravel() @ w[:, m] + b[m] for m in range(6)] for row in x])
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out, expected)


def test_affine_backward_numerical_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2, 3))
    w = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    dout = rng.standard_normal((10, 5))
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    nums = numeric_grads(lambda x, w, b: affine_forward(x, w, b)[0], [x, w, b], dout)
    assert dx.shape == x.shape
    for g, n in zip((dx, dw, db), nums, strict=True):
        assert rel_error(g, n) < 1e-8


# --- relu --------------------------------------------------------------------------------


def test_relu_forward_and_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3))
    # Keep inputs away from the kink at 0, where the numerical gradient is undefined.
    x[np.abs(x) < 1e-3] = 0.5
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0.0))
    dout = rng.standard_normal(x.shape)
    dx = relu_backward(dout, cache)
    (dx_num,) = numeric_grads(lambda x: relu_forward(x)[0], [x], dout)
    assert rel_error(dx, dx_num) < 1e-10


# --- batch norm --------------------------------------------------------------------------


def test_batchnorm_train_normalises_each_feature():
    rng = np.random.default_rng(3)
    N, D = 200, 3
    x = 50 + 10 * rng.standard_normal((N, D)) * np.array([1.0, 0.1, 5.0])
    out, _ = batchnorm_forward(x, np.ones(D), np.zeros(D), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    out, _ = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-9)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-4)


def test_batchnorm_does_not_modify_its_input():
    x = np.random.default_rng(4).standard_normal((5, 3))
    x_copy = x.copy()
    batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    np.testing.assert_array_equal(x, x_copy)


def test_batchnorm_running_statistics_formula():
    rng = np.random.default_rng(5)
    D = 4
    bn_param = {"mode": "train"}  # defaults: momentum 0.9, eps 1e-5
    running_mean, running_var = np.zeros(D), np.zeros(D)
    for _ in range(3):
        x = rng.standard_normal((8, D)) * 3 + 2
        batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
        running_mean = 0.9 * running_mean + (1 - 0.9) * x.mean(axis=0)
        running_var = 0.9 * running_var + (1 - 0.9) * x.var(axis=0)
        np.testing.assert_allclose(bn_param["running_mean"], running_mean)
        np.testing.assert_allclose(bn_param["running_var"], running_var)
    assert bn_param["running_mean"].shape == (D,)

    bn_param["momentum"] = 0.5
    x = rng.standard_normal((8, D))
    batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.5 * running_mean + 0.5 * x.mean(0))
    np.testing.assert_allclose(bn_param["running_var"], 0.5 * running_var + 0.5 * x.var(0))


def test_batchnorm_test_mode_uses_running_statistics():
    rng = np.random.default_rng(6)
    N, D = 50, 3
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    bn_param = {"mode": "train"}
    for _ in range(100):
        batchnorm_forward(rng.standard_normal((N, D)) * 2 + 3, gamma, beta, bn_param)
    rm, rv = bn_param["running_mean"].copy(), bn_param["running_var"].copy()
    # After many steps the running statistics approach the population ones.
    np.testing.assert_allclose(rm, 3, atol=0.3)
    np.testing.assert_allclose(rv, 4, atol=0.8)

    bn_param["mode"] = "test"
    x = rng.standard_normal((7, D)) * 2 + 3
    out, _ = batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta)
    # Test mode is per-row: a row's output does not depend on the rest of the batch.
    out_one, _ = batchnorm_forward(x[:1], gamma, beta, bn_param)
    np.testing.assert_allclose(out_one, out[:1])
    np.testing.assert_array_equal(bn_param["running_mean"], rm)
    np.testing.assert_array_equal(bn_param["running_var"], rv)


def test_batchnorm_backward_numerical_gradient():
    rng = np.random.default_rng(7)
    N, D = 4, 5
    x = 5 * rng.standard_normal((N, D)) + 12
    gamma = rng.standard_normal(D)
    beta = rng.standard_normal(D)
    dout = rng.standard_normal((N, D))
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    grads = batchnorm_backward(dout, cache)

    def forward(x, gamma, beta):
        return batchnorm_forward(x, gamma, beta, {"mode": "train"})[0]

    nums = numeric_grads(forward, [x, gamma, beta], dout)
    dx, dgamma, dbeta = grads
    # Entries of dx can be tiny (~1e-5), where finite-difference rounding (~1e-11
    # absolute) dominates the relative error; bound both.
    assert rel_error(dx, nums[0]) < 1e-6
    np.testing.assert_allclose(dx, nums[0], rtol=1e-7, atol=1e-10)
    assert rel_error(dgamma, nums[1]) < 1e-9
    assert rel_error(dbeta, nums[2]) < 1e-9


def test_batchnorm_backward_rejects_test_mode_cache():
    bn_param = {"mode": "train"}
    x = np.random.default_rng(8).standard_normal((4, 2))
    batchnorm_forward(x, np.ones(2), np.zeros(2), bn_param)
    bn_param["mode"] = "test"
    out, cache = batchnorm_forward(x, np.ones(2), np.zeros(2), bn_param)
    with pytest.raises(ValueError, match="batchnorm_backward"):
        batchnorm_backward(np.ones_like(out), cache)


# --- dropout -----------------------------------------------------------------------------


def _assert_same_global_state(before, after):
    name_b, keys_b, *rest_b = before
    name_a, keys_a, *rest_a = after
    assert name_b == name_a
    np.testing.assert_array_equal(keys_b, keys_a)
    assert rest_b == rest_a


def test_dropout_leaves_global_random_state_alone():
    before = np.random.get_state()
    x = np.ones((50, 50))
    dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 1})
    dropout_forward(x, {"mode": "train", "p": 0.5})
    dropout_forward(x, {"mode": "train", "p": 0.5, "rng": np.random.default_rng(2)})
    _assert_same_global_state(before, np.random.get_state())


def test_dropout_same_seed_same_mask_different_seed_different_mask():
    x = np.random.default_rng(9).standard_normal((40, 30))
    out1, _ = dropout_forward(x, {"mode": "train", "p": 0.6, "seed": 123})
    out2, _ = dropout_forward(x, {"mode": "train", "p": 0.6, "seed": 123})
    out3, _ = dropout_forward(x, {"mode": "train", "p": 0.6, "seed": 124})
    np.testing.assert_array_equal(out1, out2)
    assert not np.array_equal(out1, out3)
    # A Generator in 'rng' is drawn from instead of a fresh one.
    out4, _ = dropout_forward(x, {"mode": "train", "p": 0.6, "rng": np.random.default_rng(123)})
    np.testing.assert_array_equal(out4, out1)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_dropout_keep_fraction_and_expectation(p):
    x = np.random.default_rng(10).uniform(1.0, 2.0, size=(500, 400))
    out, _ = dropout_forward(x, {"mode": "train", "p": p, "seed": 0})
    kept = out != 0
    n = x.size
    # Binomial: the kept fraction is within 5 standard deviations of p.
    tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-12
    assert abs(kept.mean() - p) <= tol
    # Inverted dropout: kept units are scaled by 1/p, so the expectation is preserved.
    np.testing.assert_allclose(out[kept], x[kept] / p)
    assert abs(out.sum() / x.sum() - 1) <= 5 * np.sqrt((1 - p) / (p * n)) + 1e-12


def test_dropout_test_mode_is_identity():
    x = np.random.default_rng(11).standard_normal((5, 6))
    out, cache = dropout_forward(x, {"mode": "test", "p": 0.3})
    np.testing.assert_array_equal(out, x)
    dout = np.random.default_rng(12).standard_normal(x.shape)
    np.testing.assert_array_equal(dropout_backward(dout, cache), dout)


def test_dropout_backward_numerical_gradient():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((10, 8)) + 10
    dout = rng.standard_normal(x.shape)
    param = {"mode": "train", "p": 0.2, "seed": 123}
    _, cache = dropout_forward(x, param)
    dx = dropout_backward(dout, cache)
    (dx_num,) = numeric_grads(lambda x: dropout_forward(x, param)[0], [x], dout)
    assert rel_error(dx, dx_num) < 1e-10


# --- losses ------------------------------------------------------------------------------


def _scores_and_labels(seed, N=6, C=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, C)), rng.integers(0, C, size=N)


def test_softmax_loss_value():
    x, y = _scores_and_labels(14)
    loss, _ = softmax_loss(x, y)
    probs = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert np.isclose(loss, -np.mean(np.log(probs[np.arange(len(y)), y])))
    # Equal scores: the loss of a uniform guess, log C.
    loss_uniform, _ = softmax_loss(np.zeros((3, 7)), np.array([0, 3, 6]))
    assert np.isclose(loss_uniform, np.log(7))


def test_softmax_loss_numerical_gradient():
    x, y = _scores_and_labels(15)
    _, dx = softmax_loss(x, y)
    dx_num = eval_numerical_gradient(lambda x: softmax_loss(x, y)[0], x, verbose=False)
    assert rel_error(dx, dx_num) < 1e-8


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_loss_finite_for_huge_logits(dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype=dtype)
    y = np.array([0, 0])
    loss, dx = softmax_loss(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    # Row 0 is certain and right (loss 0); row 1 puts the label 2000 below the two
    # tied maxima, so its loss is 2000 + log 2.
    assert np.isclose(loss, (0.0 + 2000 + np.log(2)) / 2, rtol=1e-6)
    expected_dx = np.array([[0.0, 0.0, 0.0], [-1.0, 0.5, 0.5]]) / 2
    np.testing.assert_allclose(dx, expected_dx, atol=1e-7)


def test_svm_loss_value():
    x, y = _scores_and_labels(16)
    loss, _ = svm_loss(x, y)
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if j != y[i]:
                total += max(0.0, x[i, j] - x[i, y[i]] + 1)
    assert np.isclose(loss, total / x.shape[0])


def test_svm_loss_numerical_gradient():
    x, y = _scores_and_labels(17, N=20, C=8)
    x *= 0.001  # the CS231n check: small scores, far from the hinge for most entries
    _, dx = svm_loss(x, y)
    dx_num = eval_numerical_gradient(lambda x: svm_loss(x, y)[0], x, verbose=False)
    assert rel_error(dx, dx_num) < 1e-8


# --- dtype -------------------------------------------------------------------------------


def test_layers_keep_float32():
    rng = np.random.default_rng(18)
    f32 = np.float32
    x = rng.standard_normal((4, 2, 3)).astype(f32)
    w = rng.standard_normal((6, 5)).astype(f32)
    b = rng.standard_normal(5).astype(f32)

    out, cache = affine_forward(x, w, b)
    assert out.dtype == f32
    assert all(g.dtype == f32 for g in affine_backward(np.ones_like(out), cache))

    out, cache = relu_forward(x)
    assert out.dtype == f32 and relu_backward(np.ones_like(out), cache).dtype == f32

    a = rng.standard_normal((4, 5)).astype(f32)
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(5, dtype=f32), np.zeros(5, dtype=f32)
    out, cache = batchnorm_forward(a, gamma, beta, bn_param)
    assert out.dtype == f32
    assert all(g.dtype == f32 for g in batchnorm_backward(np.ones_like(out), cache))
    assert bn_param["running_mean"].dtype == f32 and bn_param["running_var"].dtype == f32
    bn_param["mode"] = "test"
    assert batchnorm_forward(a, gamma, beta, bn_param)[0].dtype == f32

    for mode in ("train", "test"):
        out, cache = dropout_forward(x, {"mode": mode, "p": 0.5, "seed": 0})
        assert out.dtype == f32 and dropout_backward(np.ones_like(out), cache).dtype == f32

    y = np.array([0, 1, 4, 2])
    for loss_fn in (softmax_loss, svm_loss):
        loss, dx = loss_fn(a, y)
        assert isinstance(loss, float) and dx.dtype == f32


@pytest.mark.parametrize("loss_fn", [softmax_loss, svm_loss])
def test_losses_refuse_an_empty_batch(loss_fn):
    with pytest.raises(ValueError, match=rf"{loss_fn.__name__}: expected at least one example"):
        loss_fn(np.zeros((0, 10)), np.zeros(0, dtype=np.int64))
