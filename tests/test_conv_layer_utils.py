"""The conv sandwiches: numerical gradients of every input, and agreement with the parts."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numeric_grads

from nndl.conv_layer_utils import (
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_backward,
    conv_bn_relu_pool_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from nndl.gradient_check import rel_error
from nndl.layers import relu_backward, relu_forward

CP = {"stride": 1, "pad": 1}
PP = {"pool_height": 2, "pool_width": 2, "stride": 2}


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((3, 3, 3, 3))
    b = rng.standard_normal(3)
    gamma = rng.uniform(0.5, 1.5, 3)
    beta = rng.standard_normal(3)
    return rng, x, w, b, gamma, beta


@pytest.mark.parametrize("options", [{}, {"recompute": True}])
def test_conv_relu_gradients(options):
    rng, x, w, b, _, _ = _inputs(0)
    cp = {**CP, **options}
    out, cache = conv_relu_forward(x, w, b, cp)
    expected = np.maximum(conv_forward_naive(x, w, b, CP)[0], 0)
    assert rel_error(out, expected) < 1e-10
    dout = rng.standard_normal(out.shape)
    grads = conv_relu_backward(dout, cache)
    numeric = numeric_grads(lambda *a: conv_relu_forward(*a, cp)[0], [x, w, b], dout)
    for analytic, num in zip(grads, numeric, strict=True):
        assert rel_error(analytic, num) < 1e-8


def test_conv_relu_pool_gradients():
    rng, x, w, b, _, _ = _inputs(1)
    out, cache = conv_relu_pool_forward(x, w, b, CP, PP)
    conv = np.maximum(conv_forward_naive(x, w, b, CP)[0], 0)
    assert rel_error(out, max_pool_forward_naive(conv, PP)[0]) < 1e-10
    dout = rng.standard_normal(out.shape)
    grads = conv_relu_pool_backward(dout, cache)
    numeric = numeric_grads(lambda *a: conv_relu_pool_forward(*a, CP, PP)[0], [x, w, b], dout)
    for analytic, num in zip(grads, numeric, strict=True):
        assert rel_error(analytic, num) < 1e-8


def test_conv_bn_relu_gradients():
    rng, x, w, b, gamma, beta = _inputs(2)
    out, cache = conv_bn_relu_forward(x, w, b, gamma, beta, CP, {"mode": "train"})
    assert out.shape == (2, 3, 6, 6)
    dout = rng.standard_normal(out.shape)
    grads = conv_bn_relu_backward(dout, cache)

    def forward(*arrays):
        return conv_bn_relu_forward(*arrays, CP, {"mode": "train"})[0]

    numeric = numeric_grads(forward, [x, w, b, gamma, beta], dout)
    for analytic, num in zip(grads, numeric, strict=True):
        # db is zero up to rounding: batch norm removes any per-channel shift.
        assert np.abs(analytic - num).max() < 1e-7 or rel_error(analytic, num) < 1e-8


def test_conv_bn_relu_pool_gradients():
    rng, x, w, b, gamma, beta = _inputs(3)
    out, cache = conv_bn_relu_pool_forward(x, w, b, gamma, beta, CP, {"mode": "train"}, PP)
    assert out.shape == (2, 3, 3, 3)
    dout = rng.standard_normal(out.shape)
    grads = conv_bn_relu_pool_backward(dout, cache)

    def forward(*arrays):
        return conv_bn_relu_pool_forward(*arrays, CP, {"mode": "train"}, PP)[0]

    numeric = numeric_grads(forward, [x, w, b, gamma, beta], dout)
    for analytic, num in zip(grads, numeric, strict=True):
        assert np.abs(analytic - num).max() < 1e-7 or rel_error(analytic, num) < 1e-8


def test_sandwiches_keep_float32():
    _, x, w, b, gamma, beta = _inputs(4)
    x, w, b, gamma, beta = (a.astype(np.float32) for a in (x, w, b, gamma, beta))
    out, cache = conv_bn_relu_pool_forward(x, w, b, gamma, beta, CP, {"mode": "train"}, PP)
    assert out.dtype == np.float32
    grads = conv_bn_relu_pool_backward(np.ones_like(out), cache)
    assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("bias", [None, 0.0, -1.0, 1.0])
def test_conv_relu_pool_equals_naive_composition_even_with_ties(bias):
    # Pooling before the ReLU must give the same values and gradients as the textbook
    # order, also when whole windows tie (constant outputs: w = 0).
    rng, x, w, b, _, _ = _inputs(5)
    if bias is not None:
        w = np.zeros_like(w)
        b = np.full(3, bias)
    a, cc = conv_forward_naive(x, w, b, CP)
    r, rc = relu_forward(a)
    expected, pc = max_pool_forward_naive(r, PP)
    out, cache = conv_relu_pool_forward(x, w, b, CP, PP)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(out.shape)
    naive = conv_backward_naive(relu_backward(max_pool_backward_naive(dout, pc), rc), cc)
    for got, want in zip(conv_relu_pool_backward(dout, cache), naive, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sandwiches_do_not_mutate_inputs():
    rng, x, w, b, gamma, beta = _inputs(6)
    arrays = (x, w, b, gamma, beta)
    copies = [a.copy() for a in arrays]
    out, cache = conv_bn_relu_pool_forward(x, w, b, gamma, beta, CP, {"mode": "train"}, PP)
    dout = rng.standard_normal(out.shape)
    dout_copy = dout.copy()
    conv_bn_relu_pool_backward(dout, cache)
    out, cache = conv_relu_forward(x, w, b, CP)
    conv_relu_backward(dout_copy.reshape(2, 3, 3, 3).repeat(2, 2).repeat(2, 3), cache)
    for a, c in zip((*arrays, dout), (*copies, dout_copy), strict=True):
        np.testing.assert_array_equal(a, c)
