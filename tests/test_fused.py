"""The fused conv blocks equal the naive layers composed, in every order and option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nndl.conv_layer_utils import (
    conv_block_backward,
    conv_block_forward,
    conv_pool_bn_relu_backward,
    conv_pool_bn_relu_forward,
)
from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from nndl.fast_layers import conv_backward_fast, conv_forward_fast, is_internal
from nndl.gradient_check import rel_error
from nndl.kernels import parallel
from nndl.layers import gelu_backward, gelu_forward, relu_backward, relu_forward

CP = {"stride": 1, "pad": 1}


ACTS = {"relu": (relu_forward, relu_backward), "gelu": (gelu_forward, gelu_backward)}


def _naive_block(x, w, b, gamma, beta, bn_param, pool_param, act, pool_first):
    """conv - [pool] - [BN] - [act] - [pool], composed from the naive layers."""
    if act is True:
        act = "relu"
    stages = []
    h, c = conv_forward_naive(x, w, b, CP)
    stages.append(("conv", c))
    order = ["pool", "bn", "act"] if pool_first else ["bn", "act", "pool"]
    for stage in order:
        if stage == "pool" and pool_param is not None:
            h, c = max_pool_forward_naive(h, pool_param)
        elif stage == "bn" and bn_param is not None:
            h, c = spatial_batchnorm_forward(h, gamma, beta, bn_param)
        elif stage == "act" and act:
            h, c = ACTS[act][0](h)
            stage = act
        else:
            continue
        stages.append((stage, c))
    return h, stages


def _naive_block_backward(dout, stages):
    grads = {}
    for stage, c in reversed(stages):
        if stage == "pool":
            dout = max_pool_backward_naive(dout, c)
        elif stage == "bn":
            dout, grads["dgamma"], grads["dbeta"] = spatial_batchnorm_backward(dout, c)
        elif stage in ACTS:
            dout = ACTS[stage][1](dout, c)
        else:
            dx, dw, db = conv_backward_naive(dout, c)
    return dx, dw, db, grads.get("dgamma"), grads.get("dbeta")


def _inputs(seed, C=3, F=4, H=6, W=8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, C, H, W))
    w = rng.standard_normal((F, C, 3, 3))
    b = rng.standard_normal(F)
    gamma = rng.uniform(-1.5, 1.5, F)  # negative gammas: pooling must follow BN exactly
    beta = rng.standard_normal(F)
    return rng, x, w, b, gamma, beta


def _close(a, b, act, tol=1e-10) -> bool:
    """Equal to rounding: elementwise relative error, or for GELU (and Winograd) relative
    to the largest magnitude (GELU's ``1 + tanh(u)`` cancels for negative inputs, so two
    tanh implementations one ulp apart differ by that ulp, not relatively, at tiny
    outputs; Winograd's transforms turn an exact zero into ~1e-16)."""
    if act == "gelu":
        return np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-300)
    return rel_error(a, b) < tol


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Run a test on the numba kernels and on the NumPy path (the reference)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setenv("NNDL_NUMBA", "1")
    else:
        monkeypatch.setenv("NNDL_NUMBA", "0")
    return request.param


OPTIONS = list(
    itertools.product([False, True], [False, True], [None, "relu", "gelu"], [False, True])
)


@pytest.mark.parametrize(("bn", "pool", "act", "pool_first"), OPTIONS)
def test_conv_block_equals_naive_composition(bn, pool, act, pool_first, path):
    # H = 7: the 2x2 pool runs in floor mode and leaves the last row out.
    rng, x, w, b, gamma, beta = _inputs(sum((bn, 2 * pool, 8 * pool_first)) + len(act or ""), H=7)
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": True} if pool else None
    bn_f, bn_n = ({"mode": "train"}, {"mode": "train"}) if bn else (None, None)
    out, cache = conv_block_forward(x, w, b, CP, gamma, beta, bn_f, pp, act, pool_first)
    ref, stages = _naive_block(x, w, b, gamma, beta, bn_n, pp, act, pool_first)
    assert out.shape == ref.shape
    assert _close(out, ref, act)
    dout = rng.standard_normal(ref.shape)
    got = conv_block_backward(dout, cache)
    want = _naive_block_backward(dout, stages)
    for name, g, h in zip(("dx", "dw", "db", "dgamma", "dbeta"), got, want, strict=True):
        if h is None:
            assert g is None, name
        elif name == "db" and bn:  # zero up to rounding: BN removes any shift
            assert np.abs(g - h).max() < 1e-9
        else:
            assert _close(g, h, act), name
    if bn:
        np.testing.assert_allclose(bn_f["running_mean"], bn_n["running_mean"], rtol=1e-12)
        np.testing.assert_allclose(bn_f["running_var"], bn_n["running_var"], rtol=1e-12)


@pytest.mark.parametrize(("act", "pool_first"), [("relu", False), ("gelu", False), ("gelu", True)])
def test_overlapping_pool_and_test_mode_batch_norm(act, pool_first, path):
    rng, x, w, b, gamma, beta = _inputs(20, H=7, W=10)
    pp = {"pool_height": 3, "pool_width": 3, "stride": 2, "floor": True}  # W: floor mode
    bn_f, bn_n = {"mode": "train"}, {"mode": "train"}
    out, cache = conv_block_forward(x, w, b, CP, gamma, beta, bn_f, pp, act, pool_first)
    ref, stages = _naive_block(x, w, b, gamma, beta, bn_n, pp, act, pool_first)
    assert _close(out, ref, act)
    dout = rng.standard_normal(ref.shape)
    got, want = conv_block_backward(dout, cache), _naive_block_backward(dout, stages)
    for name, g, h in zip(("dx", "dw", "db", "dgamma", "dbeta"), got, want, strict=True):
        if name == "db":  # zero up to rounding: BN removes any shift
            assert np.abs(g - h).max() < 1e-9
        else:
            assert _close(g, h, act), name
    bn_f["mode"] = bn_n["mode"] = "test"
    out, cache = conv_block_forward(x, w, b, CP, gamma, beta, bn_f, pp, act, pool_first)
    ref, _ = _naive_block(x, w, b, gamma, beta, bn_n, pp, act, pool_first)
    assert _close(out, ref, act)
    with pytest.raises(ValueError, match="conv_block_backward.*'train' mode"):
        conv_block_backward(np.ones(out.shape), cache)


def test_airbench_order_sandwich_and_custom_activation():
    rng, x, w, b, gamma, beta = _inputs(21)
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = conv_pool_bn_relu_forward(x, w, b, gamma, beta, CP, pp, {"mode": "train"})
    ref, stages = _naive_block(x, w, b, gamma, beta, {"mode": "train"}, pp, True, True)
    assert rel_error(out, ref) < 1e-10
    dout = rng.standard_normal(out.shape)
    got, want = conv_pool_bn_relu_backward(dout, cache), _naive_block_backward(dout, stages)
    for g, h in zip(got[:2], want[:2], strict=True):
        assert rel_error(g, h) < 1e-10
    # A custom activation given as a (forward, backward) pair, here ReLU's functional form.
    out2, cache2 = conv_block_forward(
        x, w, b, CP, gamma, beta, {"mode": "train"}, pp, (relu_forward, relu_backward), True
    )
    assert rel_error(out2, ref) < 1e-10
    assert (
        rel_error(conv_block_backward(dout, cache2)[1], _naive_block_backward(dout, stages)[1])
        < 1e-10
    )
    with pytest.raises(ValueError, match="conv_block_forward: a custom activation must come last"):
        conv_block_forward(x, w, b, CP, activation=(relu_forward, relu_backward), pool_param=pp)
    with pytest.raises(ValueError, match="conv_block_forward: expected activation"):
        conv_block_forward(x, w, b, CP, activation="tanh")


def test_outputs_are_internal_views_the_next_layer_reads_without_a_copy():
    _, x, w, b, gamma, beta = _inputs(22)
    out, _ = conv_block_forward(x, w, b, CP, gamma, beta, {"mode": "train"})
    assert out.shape == (2, 4, 6, 8) and is_internal(out)
    out2, _ = conv_forward_fast(out, np.ones((2, 4, 3, 3)), np.zeros(2), CP)
    assert is_internal(out2)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd2"])
def test_input_grad_false_skips_dx_only(algorithm):
    rng, x, w, b, _, _ = _inputs(23)
    cp = {**CP, "algorithm": algorithm}
    out, cache = conv_forward_fast(x, w, b, cp)
    _, cache_skip = conv_forward_fast(x, w, b, {**cp, "input_grad": False})
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_backward_fast(dout, cache)
    dx2, dw2, db2 = conv_backward_fast(dout, cache_skip)
    assert dx2 is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(TypeError, match="conv_forward_fast.*input_grad.*bool"):
        conv_forward_fast(x, w, b, {**cp, "input_grad": "no"})


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(dtype, act, path, monkeypatch):
    # Small blocks force many blocks per layer; 1 and 2 threads must agree bitwise.
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 256)
    rng, x, w, b, gamma, beta = _inputs(24, C=16, F=8, H=8, W=8)
    x, w, b, gamma, beta = (a.astype(dtype) for a in (x, w, b, gamma, beta))
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dout = rng.standard_normal((2, 8, 4, 4)).astype(dtype)
    results = []
    before = parallel.get_num_threads()
    try:
        for n in (1, 2, 1):
            parallel.set_num_threads(n)
            out, cache = conv_block_forward(x, w, b, CP, gamma, beta, {"mode": "train"}, pp, act)
            results.append([out.copy(), *[g.copy() for g in conv_block_backward(dout, cache)]])
    finally:
        parallel.set_num_threads(before)
    for other in results[1:]:
        for a, c in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("act", [None, "relu", "gelu"])
@pytest.mark.parametrize("pool_first", [False, True])
def test_float32_compiled_kernels_match_the_numpy_path(act, pool_first, monkeypatch):
    # float32 GELU uses a vectorised tanh in the kernels: within a few ulps of NumPy's.
    pytest.importorskip("numba")
    rng, x, w, b, gamma, beta = _inputs(30, C=8, F=6, H=9, W=9)
    x, w, b, gamma, beta = (a.astype(np.float32) for a in (x, w, b, gamma, beta))
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": True}
    dout = rng.standard_normal((2, 6, 4, 4)).astype(np.float32)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("NNDL_NUMBA", flag)
        out, cache = conv_block_forward(x, w, b, CP, gamma, beta, {"mode": "train"}, pp, act,
                                        pool_first)  # fmt: skip
        results.append([out.copy(), *[g.copy() for g in conv_block_backward(dout, cache)]])
    for name, a, c in zip(("out", "dx", "dw", "db", "dgamma", "dbeta"), *results, strict=True):
        # db is zero up to rounding (BN removes any shift): compare it to dout's size.
        scale = np.abs(dout).sum() if name == "db" else np.abs(c).max()
        assert np.abs(a - c).max() <= 2e-5 * scale, name


def test_backward_needs_the_kernels_the_forward_used(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setenv("NNDL_NUMBA", "1")
    rng, x, w, b, gamma, beta = _inputs(31)
    out, cache = conv_block_forward(x, w, b, CP, gamma, beta, {"mode": "train"}, None, "gelu")
    monkeypatch.setenv("NNDL_NUMBA", "0")
    with pytest.raises(
        RuntimeError, match="post_conv_backward: the forward pass used the compiled"
    ):
        conv_block_backward(np.ones(out.shape), cache)


@pytest.mark.parametrize("internal", [False, True])
def test_fast_spatial_batchnorm_equals_naive(internal, path):
    from nndl.kernels.fused import spatial_batchnorm_backward_fast, spatial_batchnorm_forward_fast

    rng = np.random.default_rng(40)
    x = rng.standard_normal((4, 3, 5, 6)) * 3 + 1
    if internal:  # a (C, H, W, N) buffer seen as (N, C, H, W), as the fast layers return
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    x0 = x.copy()
    gamma, beta = rng.uniform(-1.5, 1.5, 3), rng.standard_normal(3)
    bp_f = {"mode": "train", "momentum": 0.4, "eps": 1e-12}
    bp_n = dict(bp_f)
    out, cache = spatial_batchnorm_forward_fast(x, gamma, beta, bp_f)
    ref, ref_cache = spatial_batchnorm_forward(x, gamma, beta, bp_n)
    np.testing.assert_array_equal(x, x0)  # the input is not modified
    assert rel_error(out, ref) < 1e-10 and is_internal(out)
    dout = rng.standard_normal(ref.shape)
    for g, h in zip(
        spatial_batchnorm_backward_fast(dout, cache),
        spatial_batchnorm_backward(dout, ref_cache),
        strict=True,
    ):
        assert rel_error(g, h) < 1e-10
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(bp_f[key], bp_n[key], rtol=1e-12)
    bp_f["mode"] = bp_n["mode"] = "test"
    out, _ = spatial_batchnorm_forward_fast(x, gamma, beta, bp_f)
    assert rel_error(out, spatial_batchnorm_forward(x, gamma, beta, bp_n)[0]) < 1e-10


@pytest.mark.parametrize("internal", [False, True])
def test_fast_gelu_equals_the_layer_and_keeps_the_layout(internal, path):
    from nndl.kernels.fused import gelu_backward_fast, gelu_forward_fast

    rng = np.random.default_rng(41)
    x = rng.standard_normal((3, 2, 4, 5)) * 3
    if internal:
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    dout = rng.standard_normal(x.shape)
    out, cache = gelu_forward_fast(x)
    ref, ref_cache = gelu_forward(x)
    assert _close(out, ref, "gelu") and is_internal(out) == internal
    assert _close(gelu_backward_fast(dout, cache), gelu_backward(dout, ref_cache), "gelu")
    # float32: the kernels' vectorised tanh stays within a few ulps of NumPy's
    x32, d32 = x.astype(np.float32), dout.astype(np.float32)
    out32, cache32 = gelu_forward_fast(x32)
    assert out32.dtype == np.float32
    assert np.abs(out32 - ref).max() <= 2e-6 * np.abs(ref).max()
    dx32 = gelu_backward_fast(d32, cache32)
    dref = gelu_backward(dout, ref_cache)
    assert np.abs(dx32 - dref).max() <= 2e-6 * np.abs(dref).max()


@pytest.mark.parametrize("chunk_bytes", [None, 1])
@pytest.mark.parametrize(("H", "W", "pad"), [(7, 9, 1), (8, 8, 1), (11, 6, 0)])
def test_conv_then_pool_fused_equals_naive(H, W, pad, chunk_bytes, path, monkeypatch):
    # With the kernels: the pool runs inside the Winograd output transform; floor mode
    # leaves the last row/column out on odd sizes. Without: the two fast layers in turn.
    from nndl.fast_layers import conv_pool_backward_fast, conv_pool_forward_fast
    from nndl.kernels import winograd_compiled as _winograd_compiled

    if chunk_bytes is not None:
        monkeypatch.setattr(_winograd_compiled, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(H + W + pad)
    x = rng.standard_normal((3, 4, H, W))
    w = rng.standard_normal((5, 4, 3, 3))
    b = rng.standard_normal(5)
    cp = {"stride": 1, "pad": pad, "algorithm": "winograd4"}
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": True}
    out, cache = conv_pool_forward_fast(x, w, b, cp, pp)
    assert cache[0] == ("fused" if path == "compiled" else "composed")
    a, conv_cache = conv_forward_naive(x, w, b, cp)
    ref, pool_cache = max_pool_forward_naive(a, pp)
    # Winograd: exact up to rounding relative to the largest value (a true zero comes
    # out as ~1e-16), so compare on that scale.
    assert _close(out, ref, "gelu")
    dout = rng.standard_normal(ref.shape)
    dx, dw, db = conv_pool_backward_fast(dout, cache)
    want = conv_backward_naive(max_pool_backward_naive(dout, pool_cache), conv_cache)
    for g, h in zip((dx, dw, db), want, strict=True):
        assert _close(g, h, "gelu")
    assert conv_pool_backward_fast(dout, cache, input_grad=False)[0] is None


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_airbench_block_with_winograd_pool_fusion_equals_naive(act, path):
    rng, x, w, b, gamma, beta = _inputs(42, C=4, F=6, H=9, W=9)
    cp = {**CP, "algorithm": "winograd4"}
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": True}
    bn_f, bn_n = {"mode": "train", "eps": 1e-12}, {"mode": "train", "eps": 1e-12}
    out, cache = conv_block_forward(x, w, b, cp, gamma, beta, bn_f, pp, act, True)
    assert cache[0][0] == ("conv_pool" if path == "compiled" else "conv")
    ref, stages = _naive_block(x, w, b, gamma, beta, bn_n, pp, act, True)
    assert _close(out, ref, "gelu")  # scale-relative: Winograd
    dout = rng.standard_normal(ref.shape)
    got, want = conv_block_backward(dout, cache), _naive_block_backward(dout, stages)
    for name, g, h in zip(("dx", "dw", "db", "dgamma", "dbeta"), got, want, strict=True):
        if name == "db":  # zero up to rounding: BN removes any shift
            assert np.abs(g - h).max() < 1e-9
        else:
            assert _close(g, h, "gelu"), name
