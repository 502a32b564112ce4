"""nndl.export.to_onnx: every model kind and every nn layer, run in onnxruntime, gives
nndl's probabilities within 1e-4 on real CIFAR-10 images (synthetic ones without the
data set); the graph is valid (full checker), takes raw pixels with any batch size and
holds the preprocessing; bad input is a clear error."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from _cifar import real_cifar_dir, synthetic_batch

import nndl.nn.spec as nn_spec
from nndl.augment import normalize
from nndl.cnn import ConvNet, ThreeLayerConvNet
from nndl.data import channel_mean_std, load_CIFAR_batch
from nndl.export import EMITTERS, MODEL_TREES, layer_tree, to_onnx
from nndl.fc_net import FullyConnectedNet, TwoLayerNet
from nndl.models import load_model, save_model
from nndl.network import Network
from nndl.nn import LAYERS, Linear, ReLU

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4
N_IMAGES = 32

conv = {"type": "conv2d", "filters": 6}
MODERN_SPEC = [
    {"type": "conv2d", "filters": 6, "bias": False},
    {"type": "batchnorm2d", "scale": False},
    "gelu",
    {"type": "residual", "body": [conv, "batchnorm2d", "gelu", conv, "batchnorm2d"]},
    {"type": "residual", "shortcut": "projection",
     "body": [{"type": "conv2d", "filters": 8, "bias": False}, "batchnorm2d", "relu"]},
    {"type": "residual",
     "shortcut": [{"type": "avgpool2d"}, {"type": "conv2d", "filters": 12, "kernel_size": 1},
                  {"type": "batchnorm2d", "scale": False}],
     "body": [{"type": "conv2d", "filters": 12}, "batchnorm2d", "relu", "maxpool2d"]},
    "global_avgpool",
    {"type": "dropout", "p": 0.8},
    {"type": "linear", "units": 10, "bias": False, "scale": 0.125},
]  # fmt: skip
MISC_SPEC = [
    {"type": "conv_bn_relu", "filters": 4, "scale": False},
    {"type": "maxpool2d", "pool_size": 3, "stride": 1},
    {"type": "sequential", "layers": [
        {"type": "conv2d", "filters": 6, "kernel_size": 4, "pad": "valid", "stride": 2},
        {"type": "avgpool2d", "pool_size": 2, "stride": 1},
        "relu"]},
    "global_maxpool",
    "batchnorm1d",
    {"type": "linear", "units": 16, "scale": 0.5},  # Gemm with alpha = beta = scale
    "relu",
    "dropout",
    {"type": "linear", "units": 10},
]  # fmt: skip
MLP_SPEC = [
    "flatten",
    {"type": "linear", "units": 24, "bias": False},
    {"type": "batchnorm1d", "scale": False},
    "gelu",
    {"type": "linear", "units": 10, "init": "lecun_normal"},
]
FUSED_SPEC = [
    {"type": "conv_bn_relu_pool", "filters": 4},
    {"type": "conv_bn_relu_pool", "filters": 8, "bias": False},
    {"type": "linear", "units": 10, "init": "lecun_normal"},
]
# Layer and group norm (LayerNormalization at the default opset 17).
NORM_SPEC = [
    {"type": "conv2d", "filters": 8}, {"type": "groupnorm", "groups": 4}, "relu", "maxpool2d",
    {"type": "conv2d", "filters": 8}, "layernorm", "gelu", "global_avgpool",
    {"type": "linear", "units": 12}, "layernorm", {"type": "linear", "units": 10},
]  # fmt: skip
# The configurable fused block: no batch norm with an early pool, batch norm with a late one.
BLOCK_SPEC = [
    {"type": "conv_block", "filters": 4, "batchnorm": False, "activation": "gelu",
     "pool": "after_conv"},
    {"type": "conv_block", "filters": 6, "bias": False, "scale": False, "pool": "last",
     "pool_size": 3, "pool_stride": 2, "floor": True},
    {"type": "linear", "units": 10},
]  # fmt: skip
# airbench94's shape: a frozen 2x2 stem, fused conv-pool-BN-act blocks in floor mode.
AIRBENCH_SPEC = [
    {"type": "conv2d", "filters": 6, "kernel_size": 2, "pad": "valid", "trainable": False},
    "gelu",
    {"type": "conv_pool_bn_act", "filters": 8, "activation": "gelu", "floor": True,
     "bias": False, "scale": False, "momentum": 0.4},
    {"type": "conv_bn_act", "filters": 8, "activation": "gelu", "bias": False, "scale": False},
    {"type": "conv_pool_bn_act", "filters": 8, "floor": True},
    {"type": "maxpool2d", "pool_size": 3, "floor": True},
    "global_maxpool",
    {"type": "linear", "units": 10, "bias": False, "scale": 0.5},
]  # fmt: skip

MODELS = {
    "two_layer_net": lambda dt: TwoLayerNet(hidden_dim=16, weight_scale=0.01, dtype=dt, seed=0),
    "fc_net": lambda dt: FullyConnectedNet([16, 12], weight_scale=0.02, dtype=dt, seed=0),
    "fc_net_bn_dropout": lambda dt: FullyConnectedNet(
        [16, 12], dropout=0.5, use_batchnorm=True, weight_scale=0.02, dtype=dt, seed=0
    ),
    "three_layer_convnet": lambda dt: ThreeLayerConvNet(
        num_filters=4, filter_size=5, hidden_dim=16, weight_scale=0.02, dtype=dt, seed=0
    ),
    "three_layer_convnet_bn": lambda dt: ThreeLayerConvNet(
        num_filters=4, filter_size=3, hidden_dim=16, use_batchnorm=True, dtype=dt, seed=0
    ),
    "convnet_bn": lambda dt: ConvNet(num_filters=(4, 8), dtype=dt, seed=0),
    "convnet_bn_hidden_dropout": lambda dt: ConvNet(
        num_filters=(4, 8), hidden_dims=(16,), dropout=0.7, dtype=dt, seed=0
    ),
    "convnet_plain_pool_every_2": lambda dt: ConvNet(
        num_filters=(4, 4, 8),
        hidden_dims=(16, 12),
        use_batchnorm=False,
        pool_every=2,
        filter_size=5,
        dtype=dt,
        seed=0,
    ),
    "network_fused": lambda dt: Network(FUSED_SPEC, dtype=dt, seed=0),
    "network_modern": lambda dt: Network(MODERN_SPEC, dtype=dt, seed=0),
    "network_misc": lambda dt: Network(MISC_SPEC, dtype=dt, seed=0),
    "network_mlp": lambda dt: Network(MLP_SPEC, dtype=dt, seed=0),
    "network_airbench": lambda dt: Network(AIRBENCH_SPEC, dtype=dt, seed=0),
    "network_norms": lambda dt: Network(NORM_SPEC, dtype=dt, seed=0),
    "network_conv_block": lambda dt: Network(BLOCK_SPEC, dtype=dt, seed=0),
}


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw float32 images (N, 3, 32, 32) in 0-255, their labels, and a mean image from
    other images: real CIFAR-10 test images when the data set is there."""
    try:
        folder = real_cifar_dir()
    except pytest.skip.Exception:
        batch = synthetic_batch(N_IMAGES + 200, np.random.default_rng(0), "synthetic")
        X = batch["data"].reshape(-1, 3, 32, 32).astype(np.float32)
        y = np.asarray(batch["labels"])
    else:
        X, y = load_CIFAR_batch(folder / "test_batch")
        X = X[: N_IMAGES + 200].transpose(0, 3, 1, 2).copy()
    return X[:N_IMAGES], y[:N_IMAGES], X[N_IMAGES:].mean(axis=0)


def preprocess_numpy(pre: dict, X: np.ndarray, dtype) -> np.ndarray:
    """What training did to raw pixels: the mean image, then per-channel normalisation."""
    X = X.astype(np.float32)
    if "mean_image" in pre:
        X = X - np.asarray(pre["mean_image"], np.float32)
    if "mean" in pre:
        X = normalize(X, pre["mean"], pre["std"])
    return X.astype(dtype, copy=False)


def softmax(scores: np.ndarray) -> np.ndarray:
    s = scores.astype(np.float64)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nndl_probs(model, pre: dict, X: np.ndarray) -> np.ndarray:
    return softmax(model.loss(preprocess_numpy(pre, X, model.dtype)))


def onnx_probs(proto, X: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["probabilities"], {"images": X.astype(np.float32)})[0]


_SHIFT = re.compile(r"(^|\.)(b|beta)\d*$")
_SCALE = re.compile(r"(^|\.)gamma\d*$")


def last_layer_keys(model) -> list[str]:
    if isinstance(model, Network):
        last = [m for m in model.root.modules() if isinstance(m, Linear)][-1]
        return [last.key("W")] + ([last.key("b")] if last.bias else [])
    L = max(int(k[1:]) for k in model.params if re.fullmatch(r"W\d+", k))
    return [f"W{L}", f"b{L}"]


def prepare(model, pre: dict, X: np.ndarray, y: np.ndarray):
    """Make the comparison a real one: batch-norm running statistics from training-mode
    passes, non-zero biases and shifts, scales away from 1, and logits of moderate size
    (probabilities neither uniform nor saturated)."""
    Xp = preprocess_numpy(pre, X, model.dtype)
    for i in range(2):
        model.loss(Xp[i::4], y[i::4])
    rng = np.random.default_rng(1)
    for key, value in model.params.items():
        if _SHIFT.search(key):
            model.params[key] = rng.normal(0, 0.3, value.shape).astype(model.dtype)
        elif _SCALE.search(key):
            model.params[key] = rng.uniform(0.5, 1.5, value.shape).astype(model.dtype)
    factor = 2.5 / model.loss(Xp).std()
    for key in last_layer_keys(model):
        model.params[key] = (model.params[key] * factor).astype(model.dtype)
    return model


def check_agrees(model, pre: dict, X: np.ndarray, **kwargs) -> float:
    proto = to_onnx(model, pre, **kwargs)
    expected = nndl_probs(model, pre, X)
    top = expected.max(axis=1)
    assert 0.25 < top.mean() < 0.98, "the test needs peaked, unsaturated probabilities"
    got = onnx_probs(proto, X)
    assert got.shape == expected.shape
    err = float(np.abs(got - expected).max())
    assert err < TOL, err
    return err


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_kind_matches_nndl_in_onnxruntime(kind, dtype, images):
    X, y, mean_image = images
    pre = {"mean_image": mean_image}
    model = prepare(MODELS[kind](dtype), pre, X, y)
    check_agrees(model, pre, X)


def test_every_nn_layer_has_an_emitter_and_the_test_networks_use_them_all(images):
    assert set(LAYERS.values()) <= set(EMITTERS)
    used = set()
    for make in MODELS.values():
        tree = layer_tree(make(np.float32))
        used |= {type(m) for m in tree.root.modules()}
    assert set(LAYERS.values()) <= used
    # Residual: identity, projection and explicit shortcuts all appear.
    kinds = {
        m.shortcut_kind for m in Network(MODERN_SPEC).root.modules() if m.type_name == "residual"
    }
    assert kinds == {"identity", "projection", "layers"}


def test_every_model_class_is_exportable():
    from nndl.models import MODELS as REGISTRY

    assert set(REGISTRY.values()) <= set(MODEL_TREES)


@pytest.mark.parametrize("kind", ["convnet_bn", "network_modern", "network_mlp"])
def test_per_channel_normalisation_alone_and_after_the_mean_image(kind, images):
    X, y, mean_image = images
    mean, std = channel_mean_std(X)
    for pre in ({"mean": mean, "std": std}, {"mean_image": mean_image, "mean": mean, "std": std}):
        model = prepare(MODELS[kind](np.float32), pre, X, y)
        check_agrees(model, pre, X)


def test_no_preprocessing(images):
    X, y, _ = images
    model = prepare(MODELS["network_fused"](np.float32), {}, X, y)
    check_agrees(model, {}, X)


def test_the_graph_holds_the_preprocessing(images):
    """Fed to a graph exported without the mean image, the same raw pixels give other
    probabilities: the comparison above can tell preprocessing apart."""
    X, y, mean_image = images
    pre = {"mean_image": mean_image}
    model = prepare(MODELS["convnet_bn"](np.float32), pre, X, y)
    without = onnx_probs(to_onnx(model, {}), X)
    assert np.abs(without - nndl_probs(model, pre, X)).max() > 0.05


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_gelu_as_formula_before_opset_20_and_as_gelu_from_it(opset, images):
    X, y, mean_image = images
    pre = {"mean_image": mean_image}
    model = prepare(MODELS["network_modern"](np.float32), pre, X, y)
    check_agrees(model, pre, X, opset=opset)
    proto = to_onnx(model, pre, opset=opset)
    ops = {n.op_type for n in proto.graph.node}
    assert proto.opset_import[0].version == opset
    assert ("Gelu" in ops) == (opset >= 20)
    assert ("Tanh" in ops) == (opset < 20)
    assert "Dropout" not in ops


def test_graph_interface_dynamic_batch_and_metadata(images, tmp_path):
    X, y, mean_image = images
    names = [f"class{i}" for i in range(10)]
    pre = {"mean_image": mean_image, "class_names": names, "dtype": "float32"}
    model = prepare(MODELS["network_fused"](np.float32), pre, X, y)
    path = tmp_path / "out" / "model.onnx"
    proto = to_onnx(model, pre, path)
    loaded = onnx.load(str(path))
    assert loaded == proto
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["model.onnx"]
    onnx.checker.check_model(loaded, full_check=True)
    (inp,), (out,) = loaded.graph.input, loaded.graph.output
    assert inp.name == "images" and out.name == "probabilities"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["N", 3, 32, 32] and out_dims == ["N", 10]
    meta = {p.key: p.value for p in loaded.metadata_props}
    assert json.loads(meta["class_names"]) == names
    assert meta["nndl_model"] == "network"
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in loaded.graph.initializer)
    expected = nndl_probs(model, pre, X)
    for n in (1, 5):
        np.testing.assert_allclose(onnx_probs(loaded, X[:n]), expected[:n], atol=TOL, rtol=0)
    np.testing.assert_allclose(onnx_probs(loaded, X).sum(axis=1), 1, atol=1e-5)


def test_saved_and_loaded_models_export_path_keyed_and_legacy(images, tmp_path):
    X, y, mean_image = images
    pre = {"mean_image": mean_image}
    for kind in ("network_modern", "convnet_bn_hidden_dropout"):
        model = prepare(MODELS[kind](np.float32), pre, X, y)
        save_model(tmp_path / f"{kind}.npz", model)
        loaded, _ = load_model(tmp_path / f"{kind}.npz")
        check_agrees(loaded, pre, X)


def test_fully_connected_nets_take_flat_or_image_input(images):
    X, y, mean_image = images
    model = prepare(MODELS["fc_net"](np.float32), {"mean_image": mean_image}, X, y)
    image_input = to_onnx(model, {"mean_image": mean_image})
    assert [d.dim_value for d in image_input.graph.input[0].type.tensor_type.shape.dim[1:]] == [
        3, 32, 32,
    ]  # fmt: skip
    flat = to_onnx(model, {"mean_image": mean_image.reshape(-1)})
    np.testing.assert_allclose(
        onnx_probs(flat, X.reshape(len(X), -1)), onnx_probs(image_input, X), atol=1e-6
    )
    mean, std = channel_mean_std(X)
    check_agrees(model, {"mean": mean, "std": std}, X, input_shape=(3, 32, 32))


# --- errors ---------------------------------------------------------------------------


class MyReLU(ReLU):
    type_name = "my_relu"


def test_an_unregistered_layer_is_named(monkeypatch):
    monkeypatch.setitem(nn_spec.LAYERS, "my_relu", MyReLU)
    model = Network([{"type": "conv2d", "filters": 2}, "my_relu", {"type": "linear", "units": 10}],
                    input_dim=(3, 8, 8))  # fmt: skip
    with pytest.raises(ValueError, match=r"to_onnx: layer 'relu1' \(MyReLU, type 'my_relu'\) "
                       r"has no ONNX emitter.*nndl.export.EMITTERS"):  # fmt: skip
        to_onnx(model, {})


def test_an_unsupported_model_is_named():
    class Tiny(ConvNet):  # a subclass may compute something else
        pass

    with pytest.raises(ValueError, match=r"to_onnx: cannot export a Tiny; expected one of .*"
                       r"ConvNet.*MODEL_TREES"):  # fmt: skip
        to_onnx(Tiny(num_filters=(2,), seed=0), {})
    with pytest.raises(ValueError, match="cannot export a dict"):
        to_onnx({"W1": np.zeros(3)}, {})


@pytest.mark.parametrize(
    "pre, message",
    [
        ([1, 2], r"expected preprocess as a dict .* got list"),
        ({"mean_img": 0}, r"unknown preprocess key\(s\) \['mean_img'\]; expected some of"),
        ({"mean": [1, 2, 3]}, "needs both 'mean' and 'std'"),
        ({"mean_image": np.zeros((3, 8, 8))}, r"preprocess\['mean_image'\] of shape \(3, 4, 4\)"),
        ({"mean_image": np.full((3, 4, 4), np.nan)}, "non-finite"),
        ({"mean": [0, 0, 0], "std": [1, 0, 1]}, "every preprocess std > 0"),
        ({"mean": [0, 0], "std": [1, 1]}, r"preprocess\['mean'\] of shape \(3,\)"),
        ({"mean_image": "abc"}, r"preprocess\['mean_image'\] to be numbers"),
        ({"class_names": ["a", "b"]}, "2 class_names but the model has 10 classes"),
    ],
)
def test_bad_preprocessing_is_refused(pre, message):
    model = ConvNet(input_dim=(3, 4, 4), num_filters=(2,), seed=0)
    with pytest.raises(ValueError, match=r"^to_onnx: .*" + message):
        to_onnx(model, pre)


def test_other_bad_arguments():
    model = ConvNet(input_dim=(3, 4, 4), num_filters=(2,), seed=0)
    with pytest.raises(ValueError, match=r"to_onnx: expected opset in \[13, \d+\], got 12"):
        to_onnx(model, {}, opset=12)
    with pytest.raises(ValueError, match="expected opset as an int"):
        to_onnx(model, {}, opset=True)
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\) does not match the input "
                       r"\(3, 4, 4\) ConvNet was built for"):  # fmt: skip
        to_onnx(model, {}, input_shape=(3, 8, 8))
    fc = TwoLayerNet(input_dim=48, seed=0)
    with pytest.raises(ValueError, match=r"input_shape \(3, 5, 5\) has 75 values per example "
                       "but TwoLayerNet takes input_dim=48"):  # fmt: skip
        to_onnx(fc, {}, input_shape=(3, 5, 5))
    with pytest.raises(ValueError, match=r"per-channel 'mean'/'std' need a \(C, H, W\) input"):
        to_onnx(fc, {"mean": [0, 0, 0], "std": [1, 1, 1]})
    model.params["block1.conv.W"] = model.params["block1.conv.W"][:1]
    with pytest.raises(ValueError, match=r"parameter 'block1.conv.W' has shape \(1, 3, 3, 3\); the "
                       r"layer expects \(2, 3, 3, 3\)"):  # fmt: skip
        to_onnx(model, {})


def test_without_onnx_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'nndl\[onnx\]'"):
        to_onnx(ConvNet(input_dim=(3, 4, 4), num_filters=(2,), seed=0), {})


def test_a_run_folder_of_nndl_train_exports_as_the_readme_shows(tiny_cifar, tmp_path):
    from nndl import cli

    run = tmp_path / "run"
    argv = ["train", "--data-dir", tiny_cifar, "--out", run, "--num-training", "80",
            "--num-validation", "20", "--num-test", "20", "--num-filters", "4", "8",
            "--batch-size", "20", "--epochs", "1", "--quiet"]  # fmt: skip
    assert cli.main([str(a) for a in argv]) == 0
    model, _ = load_model(run / "best_model.npz")
    with np.load(run / "preprocess.npz") as f:
        preprocess = {"mean_image": f["mean_image"], "class_names": list(f["class_names"])}
    proto = to_onnx(model, preprocess, run / "model.onnx")
    raw = load_CIFAR_batch(tiny_cifar / "test_batch")[0].transpose(0, 3, 1, 2).copy()
    # What `nndl predict` does to an image: subtract the mean image, cast to the dtype.
    expected = softmax(model.loss((raw - preprocess["mean_image"]).astype(model.dtype)))
    np.testing.assert_allclose(onnx_probs(proto, raw), expected, atol=TOL, rtol=0)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == preprocess["class_names"]
    # The command does the same: nndl export RUN_DIR --format onnx --output MODEL.onnx
    out = tmp_path / "cli.onnx"
    assert cli.main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 0
    np.testing.assert_allclose(onnx_probs(onnx.load(out), raw), expected, atol=TOL, rtol=0)
