"""LayerNorm and GroupNorm, added through the layer registry: the reference (naive) and
fast functional forms agree, gradients match numerical ones in float64, the nn layers
build from specs, and the ONNX export agrees with onnxruntime at opset 17
(LayerNormalization) and below it (the InstanceNormalization fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.functional.norm import (
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from nndl.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)
from nndl.kernels.norm import (
    groupnorm_backward_fast,
    groupnorm_forward_fast,
    layernorm_backward_fast,
    layernorm_forward_fast,
)
from nndl.network import Network
from nndl.nn import LAYERS, GroupNorm, LayerNorm, as_spec

CASES = [  # (x shape, groups; None: layer norm)
    ((4, 7), None), ((3, 6, 4, 5), None), ((3, 6, 4, 5), 1), ((3, 6, 4, 5), 3),
    ((2, 6, 3, 3), 6),
]  # fmt: skip


def _pair(G):
    if G is None:
        return (lambda x, g, b: layernorm_forward(x, g, b, {"eps": 1e-5}), layernorm_backward,
                lambda x, g, b: layernorm_forward_fast(x, g, b, {"eps": 1e-5}),
                layernorm_backward_fast)  # fmt: skip
    return (lambda x, g, b: groupnorm_forward(x, g, b, G, {}), groupnorm_backward,
            lambda x, g, b: groupnorm_forward_fast(x, g, b, G, {}),
            groupnorm_backward_fast)  # fmt: skip


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal(shape) + 1.5
    C = shape[1]
    return x, rng.uniform(0.5, 1.5, C), rng.standard_normal(C)


@pytest.mark.parametrize(("shape", "G"), CASES)
def test_reference_normalises_each_example_and_group(shape, G):
    x, gamma, beta = _inputs(shape)
    out, _ = _pair(G)[0](x, np.ones_like(gamma), np.zeros_like(beta))
    groups = 1 if G is None else G
    per = out.reshape(shape[0], groups, -1)
    np.testing.assert_allclose(per.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(per.var(axis=2), 1, rtol=1e-4)  # eps 1e-5 against var 9


@pytest.mark.parametrize(("shape", "G"), CASES)
def test_fast_equals_reference(shape, G):
    fwd, bwd, fwd_fast, bwd_fast = _pair(G)
    x, gamma, beta = _inputs(shape)
    out, cache = fwd(x, gamma, beta)
    out_fast, cache_fast = fwd_fast(x, gamma, beta)
    np.testing.assert_allclose(out_fast, out, rtol=1e-12, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(shape)
    for a, b in zip(bwd(dout, cache), bwd_fast(dout, cache_fast), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    out32, _ = fwd_fast(x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32))
    assert out32.dtype == np.float32


@pytest.mark.parametrize(("shape", "G"), CASES)
@pytest.mark.parametrize("form", ["reference", "fast"])
def test_gradients_match_numerical_ones(shape, G, form):
    fwd, bwd = _pair(G)[:2] if form == "reference" else _pair(G)[2:]
    x, gamma, beta = _inputs(shape, seed=2)
    dout = np.random.default_rng(3).standard_normal(shape)
    dx, dgamma, dbeta = bwd(dout, fwd(x, gamma, beta)[1])
    num_dx = eval_numerical_gradient_array(lambda v: fwd(v, gamma, beta)[0], x.copy(), dout)
    num_dg = eval_numerical_gradient_array(lambda v: fwd(x, v, beta)[0], gamma.copy(), dout)
    num_db = eval_numerical_gradient_array(lambda v: fwd(x, gamma, v)[0], beta.copy(), dout)
    assert rel_error(dx, num_dx) < 1e-6
    assert rel_error(dgamma, num_dg) < 1e-8
    assert rel_error(dbeta, num_db) < 1e-8


def test_bad_input_is_named():
    x, gamma, beta = _inputs((2, 6, 3, 3))
    with pytest.raises(ValueError, match=r"groupnorm_forward: expected G to divide the 6"):
        groupnorm_forward(x, gamma, beta, 4, {})
    with pytest.raises(ValueError, match=r"layernorm_forward_fast: expected eps"):
        layernorm_forward_fast(x, gamma, beta, {"eps": 0.0})
    with pytest.raises(ValueError, match=r"groupnorm_forward_fast: expected gamma"):
        groupnorm_forward_fast(x, gamma[:3], beta, 2, {})
    with pytest.raises(ValueError, match="groups: expected an int >= 1"):
        GroupNorm(groups=0)
    with pytest.raises(ValueError, match="expected groups to divide the 6 channels"):
        Network([{"type": "conv2d", "filters": 6}, {"type": "groupnorm", "groups": 4},
                 "flatten", {"type": "linear", "units": 2}], input_dim=(3, 4, 4),
                num_classes=2)  # fmt: skip


# GELU: no kinks, so the numerical gradients are smooth.
SPEC = [
    {"type": "conv2d", "filters": 8}, {"type": "groupnorm", "groups": 4}, "gelu",
    {"type": "conv2d", "filters": 8}, "layernorm", "gelu", "flatten",
    {"type": "linear", "units": 12}, "layernorm", "gelu", {"type": "linear", "units": 3},
]  # fmt: skip


def test_the_layers_build_from_specs_and_train():
    assert LAYERS["layernorm"] is LayerNorm and LAYERS["groupnorm"] is GroupNorm
    net = Network(SPEC, input_dim=(3, 6, 6), num_classes=3, dtype=np.float64, seed=0)
    assert net.param_specs["gn1.gamma"].role == "norm_scale" and not net.buffers
    spec = as_spec(net.root)  # every argument explicit, rebuilt the same
    assert spec[1] == {"type": "groupnorm", "name": "gn1", "groups": 4, "eps": 1e-5}
    again = Network(spec, input_dim=(3, 6, 6), num_classes=3, dtype=np.float64, seed=0)
    assert set(again.params) == set(net.params)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4, 3, 6, 6)), np.array([0, 1, 2, 1])
    for k in net.params:  # scales and shifts away from 1 and 0
        if k.endswith((".gamma", ".beta")):
            net.params[k] = rng.uniform(0.5, 1.5, net.params[k].shape)
    loss, grads = net.loss(X, y)
    for key in ("gn1.gamma", "ln1.beta", "ln2.gamma", "conv1.W"):
        w = net.params[key]

        def f(_, key=key):
            return net.loss(X, y)[0]

        num = eval_numerical_gradient(f, w, verbose=False, h=1e-6)
        assert rel_error(grads[key], num) < 1e-6, key
    # Per example: the scores of one image do not depend on the rest of the batch.
    np.testing.assert_allclose(net.loss(X[:1]), net.loss(X)[:1], rtol=1e-12)


@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_export_agrees_with_onnxruntime(opset):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from nndl.export import to_onnx

    net = Network(SPEC, input_dim=(3, 6, 6), num_classes=3, seed=0)
    rng = np.random.default_rng(1)
    for k in net.params:
        if k.endswith((".gamma", ".beta")):
            net.params[k] = rng.uniform(0.5, 1.5, net.params[k].shape).astype(np.float32)
    X = rng.standard_normal((5, 3, 6, 6)).astype(np.float32)
    proto = to_onnx(net, {}, opset=opset)
    ops = {n.op_type for n in proto.graph.node}
    assert ("LayerNormalization" in ops) == (opset >= 17)
    assert ("InstanceNormalization" in ops) == (opset < 17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": X})[0]
    scores = net.loss(X).astype(np.float64)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=2e-5)
