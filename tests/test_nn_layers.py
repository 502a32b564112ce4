"""nndl.nn layer objects: every layer gradient-checked through the object (its params and
its input) in float64, shapes inferred, spec round trips, errors naming the layer path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import distinct_values
from numpy.lib.stride_tricks import sliding_window_view

import nndl.nn as nn
from nndl.conv_layers import conv_forward_naive
from nndl.gradient_check import eval_numerical_gradient_array, rel_error
from nndl.nn.init import init_params


def _setup(module, in_shape, rng, N=3, x=None):
    """Bind ``module``, draw its params (normal, so batch norm's gamma is not all ones)
    and buffers; return ``(x, params, buffers)``."""
    module.bind(in_shape)
    specs, bufs = {}, {}
    for m in module.modules():
        specs.update({m.key(k): s for k, s in m.param_specs(m.in_shape).items()})
        bufs.update(
            {m.key(k): np.full(b.shape, b.fill) for k, b in m.buffer_specs(m.in_shape).items()}
        )
    params = init_params(
        specs, lambda key, shape, std: rng.standard_normal(shape) * std, np.float64
    )
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    if x is None:
        x = rng.standard_normal((N, *in_shape))
    return x, params, bufs


def _check_gradients(module, in_shape, seed=0, x=None, tol=1e-7):
    """Analytic vs numerical gradients of sum(forward(x) * dout) for x and every param."""
    rng = np.random.default_rng(seed)
    x, params, buffers = _setup(module, in_shape, rng, x=x)

    def ctx(grads=None):
        # A fresh Generator per call pins dropout's mask across the numerical evaluations.
        return nn.Context(params, buffers, grads, "train", np.random.default_rng(seed))

    out, cache = module.forward(x, ctx({}))
    assert out.shape == (x.shape[0], *module.output_shape)
    dout = rng.standard_normal(out.shape)
    c = ctx({})
    dx = module.backward(dout, cache, c)
    assert set(c.grads) == set(params)

    def f(_):
        return module.forward(x, ctx({}))[0]

    errors = {"x": rel_error(dx, eval_numerical_gradient_array(f, x, dout))}
    for key, p in params.items():
        num = eval_numerical_gradient_array(f, p, dout)
        g = c.grads[key]
        assert g.shape == p.shape, key
        # Biases feeding batch norm have an exactly zero gradient: compare absolutely.
        errors[key] = rel_error(g, num) if np.abs(num).max() > 1e-6 else np.abs(g - num).max()
    bad = {k: e for k, e in errors.items() if not e < tol}
    assert not bad, bad
    return errors


LEAF_CASES = [
    (lambda: nn.Conv2d(3, kernel_size=3), (2, 5, 5)),
    (lambda: nn.Conv2d(2, kernel_size=2, pad="valid", bias=False), (3, 4, 5)),
    (lambda: nn.Conv2d(2, kernel_size=3, stride=2, pad=1), (2, 5, 5)),
    (lambda: nn.Linear(4), (3, 2, 2)),
    (lambda: nn.Linear(3, bias=False, scale=1 / 9), (5,)),
    (lambda: nn.BatchNorm2d(), (3, 2, 3)),
    (lambda: nn.BatchNorm2d(scale=False, momentum=0.4, eps=1e-3), (3, 2, 3)),
    (lambda: nn.BatchNorm1d(), (4,)),
    (lambda: nn.ReLU(), (2, 3, 3)),
    (lambda: nn.GELU(), (2, 3, 3)),
    (lambda: nn.AvgPool2d(2), (2, 4, 6)),
    (lambda: nn.AvgPool2d(3, stride=1), (1, 4, 4)),
    (lambda: nn.GlobalAvgPool(), (3, 2, 3)),
    (lambda: nn.Flatten(), (2, 3, 2)),
    (lambda: nn.Dropout(0.6), (3, 4)),
]


@pytest.mark.parametrize("make, in_shape", LEAF_CASES)
def test_leaf_layer_gradients(make, in_shape):
    _check_gradients(make(), in_shape)


@pytest.mark.parametrize(
    ("make", "in_shape"),
    [
        (lambda: nn.MaxPool2d(2), (2, 4, 4)),
        (lambda: nn.GlobalMaxPool(), (2, 4, 4)),
        (lambda: nn.MaxPool2d(2, floor=True), (2, 5, 4)),  # row 5 left out
        (lambda: nn.MaxPool2d(3, stride=2, floor=True), (2, 6, 5)),
    ],
)
def test_max_pool_layer_gradients(make, in_shape):
    # Distinct values keep the max away from ties, where it is not differentiable.
    x = distinct_values(np.random.default_rng(1), (2, *in_shape))
    _check_gradients(make(), in_shape, x=x)


def test_floor_mode_pools_leave_the_border_out():
    pool = nn.MaxPool2d(2, floor=True)
    assert pool.bind((3, 31, 31)) == (3, 15, 15)
    assert nn.AvgPool2d(2, floor=True).bind((1, 5, 4)) == (1, 2, 2)
    _check_gradients(nn.AvgPool2d(2, floor=True), (2, 5, 4))
    x = np.random.default_rng(2).standard_normal((2, 1, 5, 5))
    out, cache = pool.forward(x, nn.Context({}, {}, {}))
    np.testing.assert_array_equal(out, sliding_window_view(x[:, :, :4, :4], (2, 2), axis=(2, 3))
                                  [:, :, ::2, ::2].max(axis=(-2, -1)))  # fmt: skip
    dx = pool.backward(np.ones(out.shape), cache, nn.Context({}, {}, {}))
    assert np.all(dx[:, :, 4, :] == 0) and np.all(dx[:, :, :, 4] == 0)
    assert nn.MaxPool2d(2, floor=True).spec()["floor"] is True
    with pytest.raises(ValueError, match="does not tile the input.*floor: true"):
        nn.MaxPool2d(2).bind((1, 5, 5))
    with pytest.raises(ValueError, match="floor: expected true or false"):
        nn.MaxPool2d(2, floor="yes")


CONTAINER_CASES = [
    lambda: nn.Sequential([nn.Conv2d(3), nn.BatchNorm2d(), nn.ReLU(), nn.Flatten(), nn.Linear(2)]),
    lambda: nn.Residual([nn.Conv2d(2), nn.BatchNorm2d(), nn.GELU(), nn.Conv2d(2)]),
    lambda: nn.Residual([nn.Conv2d(4, bias=False), nn.BatchNorm2d()], shortcut="projection"),
    lambda: nn.Residual(
        [nn.Conv2d(3), nn.AvgPool2d(2)], shortcut=[nn.AvgPool2d(2), nn.Conv2d(3, kernel_size=1)]
    ),
    lambda: nn.ConvBNReLU(3),
    lambda: nn.ConvBNReLU(3, kernel_size=1, bias=False, scale=False),
    lambda: nn.ConvBNReLUPool(3),
    lambda: nn.ConvReLU(3, kernel_size=1, bias=False),
    lambda: nn.ConvReLUPool(3),
    lambda: nn.ConvBNAct(3, activation="gelu"),
    lambda: nn.ConvBNAct(2, bias=False, scale=False, eps=1e-12, activation="relu"),
    lambda: nn.ConvPoolBNAct(3, activation="gelu"),
]


@pytest.mark.parametrize("make", CONTAINER_CASES)
def test_container_and_fused_block_gradients(make):
    _check_gradients(make(), (2, 4, 4), seed=3)


def test_fused_pool_block_gradients_in_floor_mode():
    x = distinct_values(np.random.default_rng(6), (3, 2, 5, 5))
    block = nn.ConvPoolBNAct(3, activation="gelu", floor=True, scale=False)
    # 1e-6: a pooled window's two largest conv outputs can lie within the numerical
    # step of each other here (exactness against the naive layers: tests/test_fused.py).
    _check_gradients(block, (2, 5, 5), seed=3, x=x, tol=1e-6)
    assert block.output_shape == (3, 2, 2)
    assert [m.path for m in block.modules()][1:] == ["conv", "pool", "bn", "gelu"]


def test_fused_blocks_equal_their_unfused_layers():
    rng = np.random.default_rng(4)
    gelu_pool = [nn.Conv2d(3), nn.MaxPool2d(2, floor=True), nn.BatchNorm2d(), nn.GELU()]
    for fused, unfused, in_shape in [
        (nn.ConvBNReLU(3), [nn.Conv2d(3), nn.BatchNorm2d(), nn.ReLU()], (2, 4, 4)),
        (
            nn.ConvBNReLUPool(3),
            [nn.Conv2d(3), nn.BatchNorm2d(), nn.ReLU(), nn.MaxPool2d()],
            (2, 4, 4),
        ),
        (
            nn.ConvBNAct(3, activation="gelu"),
            [nn.Conv2d(3), nn.BatchNorm2d(), nn.GELU()],
            (2, 4, 5),
        ),
        (nn.ConvPoolBNAct(3, activation="gelu", floor=True), gelu_pool, (2, 5, 5)),
        (nn.ConvReLU(3), [nn.Conv2d(3), nn.ReLU()], (2, 4, 4)),
        (nn.ConvReLUPool(3), [nn.Conv2d(3), nn.ReLU(), nn.MaxPool2d()], (2, 4, 4)),
    ]:
        x, params, buffers = _setup(fused, in_shape, rng)
        plain = nn.Sequential(unfused)
        plain.bind(in_shape, "b")
        rename = {"b.conv1": "conv", "b.bn1": "bn"}
        p2 = {}
        for k, v in params.items():
            layer, local = k.rsplit(".", 1)
            p2[next(n for n, o in rename.items() if o == layer) + "." + local] = v
        b2 = {k.replace("bn.", "b.bn1."): v.copy() for k, v in buffers.items()}
        c1, c2 = nn.Context(params, buffers, {}), nn.Context(p2, b2, {})
        o1, k1 = fused.forward(x, c1)
        o2, k2 = plain.forward(x, c2)
        np.testing.assert_allclose(o1, o2, atol=1e-12)
        dout = rng.standard_normal(o1.shape)
        np.testing.assert_allclose(
            fused.backward(dout, k1, c1), plain.backward(dout, k2, c2), atol=1e-12
        )
        for k, v in c1.grads.items():
            layer, local = k.rsplit(".", 1)
            key2 = next(n for n, o in rename.items() if o == layer) + "." + local
            np.testing.assert_allclose(v, c2.grads[key2], atol=1e-12)
        for k, v in buffers.items():
            np.testing.assert_allclose(v, b2[k.replace("bn.", "b.bn1.")], atol=1e-14)
        # The fused block names its params like the unfused sublayers it holds.
        kinds = [type(m).__name__.lower() for m in unfused]
        names = {"conv2d": "conv", "batchnorm2d": "bn", "relu": "relu", "gelu": "gelu",
                 "maxpool2d": "pool"}  # fmt: skip
        assert [m.path for m in fused.modules()][1:] == [names[k] for k in kinds]


def test_batchnorm_layer_updates_and_uses_running_statistics():
    rng = np.random.default_rng(5)
    bn = nn.BatchNorm2d(momentum=0.5)
    x, params, buffers = _setup(bn, (2, 3, 3), rng, N=4)
    bn.forward(x, nn.Context(params, buffers, {}, "train"))
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(buffers["running_mean"], 0.5 * mean)
    np.testing.assert_allclose(buffers["running_var"], 0.5 + 0.5 * var)
    out, cache = bn.forward(x, nn.Context(params, buffers, None, "test"))
    expected = (x - buffers["running_mean"][:, None, None]) / np.sqrt(
        buffers["running_var"][:, None, None] + 1e-5
    ) * params["gamma"][:, None, None] + params["beta"][:, None, None]
    np.testing.assert_allclose(out, expected)


def test_dropout_layer_is_identity_in_test_mode_and_keeps_fraction_p():
    drop = nn.Dropout(0.25)
    drop.bind((1000,))
    x = np.ones((20, 1000))
    out, _ = drop.forward(x, nn.Context({}, {}, None, "test"))
    assert out is x
    out, _ = drop.forward(x, nn.Context({}, {}, {}, "train", np.random.default_rng(0)))
    assert abs((out > 0).mean() - 0.25) < 0.01 and np.allclose(out[out > 0], 4.0)


def test_need_input_grad_false_skips_dx_of_elementwise_layers():
    seq = nn.Sequential([nn.ReLU(), nn.Flatten(), nn.Linear(2)])
    seq.bind((3, 2))
    rng = np.random.default_rng(6)
    params = {"fc1.W": rng.standard_normal((6, 2)), "fc1.b": np.zeros(2)}
    ctx = nn.Context(params, {}, {}, need_input_grad=False)
    out, cache = seq.forward(rng.standard_normal((4, 3, 2)), ctx)
    assert seq.backward(np.ones_like(out), cache, ctx) is None
    assert set(ctx.grads) == {"fc1.W", "fc1.b"} and ctx.need_input_grad is False


def test_inference_keeps_no_caches():
    seq = nn.Sequential([nn.ReLU(), nn.ReLU()])
    seq.bind((3,))
    out, cache = seq.forward(np.ones((2, 3)), nn.Context({}, {}, None, "test"))
    assert cache is None and out.shape == (2, 3)


# --- shapes, names, specs -----------------------------------------------------------------


def test_shapes_are_inferred_and_paths_named():
    body = [{"type": "conv2d", "filters": 6, "stride": 1}, "batchnorm2d", "relu"]
    head = ["global_avgpool", {"type": "linear", "units": 3}]
    root = nn.build(
        [
            {"type": "conv2d", "filters": 4},
            "batchnorm2d",
            "relu",
            {"type": "residual", "shortcut": "projection", "body": body},
            {"type": "sequential", "name": "head", "layers": head},
        ]
    )
    assert root.bind((3, 8, 8)) == (3,)
    paths = {m.path: (type(m).__name__, m.output_shape) for m in root.modules() if m.path}
    assert paths["conv1"] == ("Conv2d", (4, 8, 8))
    assert paths["res1.body.conv1"] == ("Conv2d", (6, 8, 8))
    assert paths["res1.shortcut.conv"] == ("Conv2d", (6, 8, 8))
    assert paths["head.gap1"] == ("GlobalAvgPool", (6,))
    assert paths["head.fc1"] == ("Linear", (3,))
    assert root.layers[0].param_specs((3, 8, 8))["W"].shape == (4, 3, 3, 3)


def test_auto_names_skip_explicit_ones_and_are_per_type():
    root = nn.build(["relu", {"type": "relu", "name": "relu2"}, "relu", "gelu", "relu"])
    assert [m.name for m in root.layers] == ["relu1", "relu2", "relu3", "gelu1", "relu4"]


def test_spec_round_trip_is_a_fixed_point_and_json():
    conv4 = {"type": "conv2d", "filters": 4}
    conv2 = {"type": "conv2d", "filters": 2}
    spec = [
        {"type": "conv_bn_relu_pool", "filters": 4, "bias": False, "scale": False},
        {"type": "residual", "body": [{"type": "conv_bn_relu", "filters": 4}, conv4]},
        {"type": "residual", "shortcut": [{**conv2, "kernel_size": 1}], "body": [conv2]},
        {"type": "dropout", "p": 0.9},
        "gelu",
        {"type": "avgpool2d", "pool_size": 2},
        "flatten",
        {"type": "batchnorm1d"},
        {"type": "linear", "units": 3, "scale": 0.5, "bias": False},
    ]
    root = nn.build(spec)
    resolved = [m.spec() for m in root.layers]
    assert json.loads(json.dumps(resolved)) == resolved
    again = [m.spec() for m in nn.build(resolved).layers]
    assert again == resolved
    for name, cls in nn.LAYERS.items():
        assert cls.type_name == name


def test_modules_given_as_objects_give_the_same_spec_as_json():
    objs = nn.Sequential(
        [nn.Conv2d(4), nn.BatchNorm2d(scale=False), nn.ReLU(), nn.Flatten(), nn.Linear(2)]
    )
    spec = nn.as_spec(objs)
    assert [s["name"] for s in spec] == ["conv1", "bn1", "relu1", "flatten1", "fc1"]
    assert nn.as_spec(spec) is spec


CONV2 = {"type": "conv2d", "filters": 2}
SPEC_ERRORS = [
    (["relu", "convv"], r"layer '\[1\]': unknown layer type 'convv'; expected one of \[.*'conv2d'"),
    ([{"filters": 3}], r"layer '\[0\]': expected a 'type' key"),
    ([3], r"expected a layer type name or a dict with 'type', got int 3"),
    (
        [{**CONV2, "kernal_size": 3}],
        r"layer 'conv1' \(conv2d\): unknown key\(s\) \['kernal_size'\]; "
        r"expected some of \['filters', 'kernel_size'",
    ),
    ([{"type": "conv2d"}], r"layer 'conv1' \(conv2d\): .*filters.*expected keys \['filters'"),
    (
        [{"type": "conv2d", "filters": "a"}],
        r"layer 'conv1' \(conv2d\): filters: expected an int >= 1, got 'a'",
    ),
    (
        [{**CONV2, "pad": "sme"}],
        r"layer 'conv1' \(conv2d\): pad: expected 'same', 'valid' or an int >= 0, got 'sme'",
    ),
    ([{**CONV2, "kernel_size": 2}], r"pad: 'same' needs an odd kernel_size"),
    (
        [{"type": "residual", "body": ["relu", {"type": "linear", "units": 0}]}],
        r"layer 'res1.body.fc1' \(linear\): units: expected an int >= 1, got 0",
    ),
    (
        [{"type": "residual", "body": ["relu"], "shortcut": "proj"}],
        r"layer 'res1' \(residual\): shortcut: expected one of \['identity', 'projection'\]",
    ),
    ([{"type": "residual", "body": []}], r"layer 'res1': body: expected a non-empty list"),
    (
        [{"type": "residual", "body": ["relu"], "shortcut": 5}],
        r"layer 'res1': shortcut: expected a non-empty list of layers or one of \['identity'",
    ),
    (["relu", {"type": "gelu", "name": "a.b"}], r"name: expected an identifier"),
    ([{"type": "relu", "name": "x"}, {"type": "gelu", "name": "x"}], r"two layers are named 'x'"),
    ([{"type": "dropout", "p": 0}], r"layer 'drop1' \(dropout\): p: expected a number in \(0, 1\]"),
    (
        [{"type": "linear", "units": 2, "init": "he"}],
        r"init: expected one of \['glorot_normal', 'he_normal'",
    ),
    ([{"type": "batchnorm2d", "scale": "no"}], r"scale: expected true or false, got 'no'"),
    ([], r"the network: expected a non-empty list of layers"),
]


@pytest.mark.parametrize("spec, words", SPEC_ERRORS)
def test_spec_errors_name_the_layer_and_the_choices(spec, words):
    with pytest.raises(ValueError, match=words):
        nn.build(spec)


SHAPE_ERRORS = [
    (
        [{**CONV2, "stride": 2}],
        (3, 8, 8),
        r"layer 'conv1' \(Conv2d\): a 3x3 kernel with stride 2 and pad 1 does not fit the "
        r"input \(3, 8, 8\)",
    ),
    (["maxpool2d"], (3, 5, 5), r"layer 'pool1' \(MaxPool2d\): a 2x2 window with stride 2 does not"),
    (["flatten", "batchnorm2d"], (3, 2, 2), r"layer 'bn1' \(BatchNorm2d\): .* use batchnorm1d"),
    (["flatten", CONV2], (3, 2, 2), r"layer 'conv1' \(Conv2d\): expected a \(C, H, W\) input"),
    (
        [{"type": "residual", "body": [CONV2]}],
        (3, 4, 4),
        r"layer 'res1' \(Residual\): an identity shortcut needs the body to keep the shape.*"
        r"\(3, 4, 4\) to \(2, 4, 4\)",
    ),
    (
        [{"type": "residual", "shortcut": "projection", "body": [CONV2, "maxpool2d"]}],
        (3, 4, 4),
        r"layer 'res1' \(Residual\): a 1x1 conv with stride 2 does not map",
    ),
    (
        [{"type": "residual", "shortcut": ["maxpool2d"], "body": ["relu"]}],
        (3, 4, 4),
        r"the shortcut maps \(3, 4, 4\) to \(3, 2, 2\) but the body to \(3, 4, 4\)",
    ),
]


@pytest.mark.parametrize("spec, in_shape, words", SHAPE_ERRORS)
def test_shape_errors_name_the_layer(spec, in_shape, words):
    with pytest.raises(ValueError, match=words):
        nn.build(spec).bind(in_shape)


def test_projection_shortcut_picks_a_fitting_stride():
    res = nn.Residual([nn.Conv2d(4, kernel_size=3, stride=2, pad="valid")], shortcut="projection")
    assert res.bind((2, 7, 7)) == (4, 3, 3)
    assert res.shortcut.layers[0].stride == 3  # 1 + (7 - 1) / 3 = 3
    _check_gradients(res, (2, 7, 7), seed=7)


def test_star_import_is_clean():
    ns: dict = {}
    exec("from nndl.nn import *", ns)
    names = set(ns) - {"__builtins__"}
    assert names == set(nn.__all__)
    assert "np" not in names and "Module" in names and "LAYERS" in names


# --- patch whitening ------------------------------------------------------------------------


def test_patch_whitening_whitens_patches_through_a_conv():
    rng = np.random.default_rng(8)
    # Correlated channels and neighbouring pixels, so whitening has something to undo.
    base = rng.standard_normal((40, 3, 9, 9))
    mix = np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.3, 0.0, 1.0]])
    X = np.einsum("dc,nchw->ndhw", mix, base)
    X[:, :, 1:] += 0.8 * X[:, :, :-1]
    W = nn.patch_whitening_weights(X, patch_size=2, eps=0.0, chunk=7)
    assert W.shape == (24, 3, 2, 2)
    np.testing.assert_array_equal(W[12:], -W[:12])
    out, _ = conv_forward_naive(X, W[:12], np.zeros(12), {"stride": 1, "pad": 0})
    flat = out.transpose(1, 0, 2, 3).reshape(12, -1)
    np.testing.assert_allclose(flat @ flat.T / flat.shape[1], np.eye(12), atol=1e-8)


def test_patch_whitening_eps_shrinks_small_directions_and_orders_by_eigenvalue():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((10, 1, 5, 5)) * 0.01
    W = nn.patch_whitening_weights(X, patch_size=2, eps=1e-4)
    P = sliding_window_view(X, (2, 2), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(-1, 4)
    lam = np.linalg.eigvalsh(P.T @ P / len(P))[::-1]
    Z = P @ W[:4].reshape(4, -1).T
    np.testing.assert_allclose(np.diag(Z.T @ Z / len(Z)), lam / (lam + 1e-4), rtol=1e-8)


@pytest.mark.parametrize(
    "args, words",
    [
        ((np.zeros((2, 3, 8)),), r"patch_whitening_weights: expected X with 4 dimensions"),
        ((np.zeros((2, 3, 1, 1)),), r"expected at least one image of at least 2x2"),
        ((np.ones((2, 1, 3, 3)), 2, -1.0), r"expected eps >= 0"),
        ((np.ones((2, 1, 3, 3)), 2, 0.0), r"singular .* use eps > 0"),
    ],
)
def test_patch_whitening_bad_inputs(args, words):
    with pytest.raises(ValueError, match=words):
        nn.patch_whitening_weights(*args)


def test_conv_skips_dx_when_not_needed_and_a_frozen_prefix_skips_its_backward():
    # A frozen first conv and its activation: no backward at all; the next conv gets
    # need_input_grad False and skips dx. The trainable grads stay exact.
    rng = np.random.default_rng(7)
    frozen = nn.Conv2d(3, kernel_size=2, pad="valid", trainable=False)
    layers = [frozen, nn.GELU(), nn.ConvBNAct(2, activation="gelu"), nn.Flatten(), nn.Linear(3)]
    seq = nn.Sequential(layers)
    x, params, buffers = _setup(seq, (2, 5, 5), rng)
    calls = []
    for layer in seq.layers[:3]:
        orig = layer.backward

        def spy(dout, cache, ctx, _orig=orig, _layer=layer):
            calls.append((_layer.name, ctx.need_input_grad))
            return _orig(dout, cache, ctx)

        layer.backward = spy

    def ctx(grads=None):
        return nn.Context(params, buffers, grads, "train", need_input_grad=False)

    out, cache = seq.forward(x, ctx({}))
    dout = rng.standard_normal(out.shape)
    c = ctx({})
    assert seq.backward(dout, cache, c) is None
    assert calls == [("block1", False)]
    assert set(c.grads) == {k for k in params if not k.startswith("conv1.")}
    for key in ("block1.conv.W", "fc1.W"):
        num = eval_numerical_gradient_array(lambda _: seq.forward(x, ctx({}))[0], params[key], dout)
        assert rel_error(c.grads[key], num) < 1e-7, key
    # A trainable Conv2d told its dx is not needed stores its grads and returns None.
    conv = nn.Conv2d(2)
    x, params, buffers = _setup(conv, (2, 4, 4), rng)
    out, cache = conv.forward(x, nn.Context(params, buffers, {}))
    c = nn.Context(params, buffers, {}, need_input_grad=False)
    assert conv.backward(np.ones(out.shape), cache, c) is None
    assert set(c.grads) == {"W", "b"}
