"""nndl.explain: input gradients against numerical ones (float64, every model and layer
kind), layer outputs against the forward pass, Grad-CAM on a net whose answer is known,
fooling images, class visualisation, and the ``nndl explain`` command."""

from __future__ import annotations

import numpy as np
import pytest
from _cli import run_cli

from nndl.cnn import ConvNet, ThreeLayerConvNet
from nndl.explain import (
    activations,
    class_visualization,
    feature_maps,
    fooling_image,
    grad_cam,
    input_gradient,
    layer_gradient,
    layer_paths,
    saliency_map,
    spatial_layers,
)
from nndl.fc_net import FullyConnectedNet, TwoLayerNet
from nndl.gradient_check import eval_numerical_gradient_array, rel_error
from nndl.models import pretrained
from nndl.network import Network
from nndl.nn import LAYERS, Context

# Every layer type (LAYERS), fused blocks and residual blocks of all three shortcut kinds.
EVERY_LAYER = [  # for a (3, 12, 12) input
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "trainable": False},
    "batchnorm2d",
    "gelu",
    {"type": "conv_bn_act", "filters": 4, "activation": "gelu"},
    {"type": "conv_pool_bn_act", "filters": 4},
    {"type": "residual", "body": [{"type": "conv_bn_relu", "filters": 4}]},
    {"type": "sequential", "layers": [{"type": "conv_bn_relu_pool", "filters": 6}, "relu"]},
    {"type": "residual", "shortcut": "projection",
     "body": [{"type": "conv2d", "filters": 6, "stride": 2, "bias": False}, "batchnorm2d"]},
    {"type": "residual", "body": [{"type": "conv_relu", "filters": 6}],
     "shortcut": [{"type": "conv2d", "filters": 6, "kernel_size": 1}]},
    {"type": "conv_relu_pool", "filters": 6, "kernel_size": 1},
    {"type": "avgpool2d", "pool_size": 1},
    {"type": "maxpool2d", "pool_size": 1},
    {"type": "conv2d", "filters": 4, "kernel_size": 1, "pad": "valid"},
    "flatten",
    {"type": "dropout", "p": 0.5},
    {"type": "linear", "units": 6, "scale": 0.5},
    "batchnorm1d",
    "relu",
    {"type": "linear", "units": 3},
]  # fmt: skip
TWO_POOLS = [{"type": "conv2d", "filters": 3}, "global_avgpool", {"type": "linear", "units": 3}]
MAX_POOLS = [{"type": "conv2d", "filters": 3}, "global_maxpool", {"type": "linear", "units": 3}]


def _types(spec) -> set[str]:
    out = set()
    for layer in spec:
        layer = {"type": layer} if isinstance(layer, str) else layer
        out.add(layer["type"])
        for key in ("body", "layers"):
            out |= _types(layer.get(key, []))
        if isinstance(layer.get("shortcut"), list):
            out |= _types(layer["shortcut"])
    return out


def test_the_specs_cover_every_layer_type():
    assert _types(EVERY_LAYER + TWO_POOLS + MAX_POOLS) == set(LAYERS)


def _randomize_state(model, rng):
    """Non-trivial parameters and running statistics, so test mode is really checked."""
    for k, v in model.params.items():
        model.params[k] = v + rng.normal(0, 0.3, v.shape) if "gamma" in k or "beta" in k else v
    arrays = model.state_arrays()
    model.load_state_arrays({k: rng.uniform(0.5, 1.5, v.shape) if "var" in k
                             else rng.normal(0, 0.5, v.shape)
                             for k, v in arrays.items()})  # fmt: skip


MODELS = {
    "every_layer": lambda: Network(
        EVERY_LAYER, input_dim=(3, 12, 12), num_classes=3, dtype=np.float64, seed=1
    ),  # fmt: skip
    "global_avgpool": lambda: Network(TWO_POOLS, (2, 5, 5), 3, dtype=np.float64, seed=2),
    "global_maxpool": lambda: Network(MAX_POOLS, (2, 5, 5), 3, dtype=np.float64, seed=3),
    "convnet": lambda: ConvNet(
        (3, 8, 8),
        num_filters=(4, 5),
        hidden_dims=(6,),
        num_classes=3,
        dropout=0.5,
        pool_every=2,
        dtype=np.float64,
        seed=4,
    ),  # fmt: skip
    "convnet_no_bn": lambda: ConvNet(
        (3, 8, 8), num_filters=(4,), num_classes=3, use_batchnorm=False, dtype=np.float64, seed=5
    ),  # fmt: skip
    "three_layer_bn": lambda: ThreeLayerConvNet(
        (3, 8, 8),
        num_filters=4,
        filter_size=3,
        hidden_dim=6,
        num_classes=3,
        weight_scale=0.3,
        use_batchnorm=True,
        dtype=np.float64,
        seed=6,
    ),
    "fc_net": lambda: FullyConnectedNet(
        [7, 5],
        input_dim=3 * 4 * 4,
        num_classes=3,
        dropout=0.5,
        use_batchnorm=True,
        weight_scale=0.3,
        dtype=np.float64,
        seed=7,
    ),  # fmt: skip
    "two_layer": lambda: TwoLayerNet(
        input_dim=3 * 4 * 4, hidden_dim=6, num_classes=3, weight_scale=0.3, dtype=np.float64, seed=8
    ),  # fmt: skip
}
SHAPES = {"every_layer": (3, 12, 12), "fc_net": (3, 4, 4), "two_layer": (3, 4, 4),
          "global_avgpool": (2, 5, 5), "global_maxpool": (2, 5, 5)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_input_gradient_matches_numerical_gradient(name):
    rng = np.random.default_rng(0)
    model = MODELS[name]()
    _randomize_state(model, rng)
    N = 1 if name == "every_layer" else 2  # the largest: one example keeps the test fast
    X = rng.normal(0, 1, (N, *SHAPES.get(name, (3, 8, 8))))
    dscores = rng.normal(size=(N, 3))
    before = {k: v.copy() for k, v in {**model.params, **model.state_arrays()}.items()}
    dX = input_gradient(model, X, dscores)
    # scores(X) = model.loss(X): test mode, so dropout is the identity here too
    num = eval_numerical_gradient_array(lambda x: model.loss(x), X.copy(), dscores)
    assert dX.shape == X.shape
    assert rel_error(dX, num) < 1e-5, rel_error(dX, num)
    after = {**model.params, **model.state_arrays()}
    assert all(np.array_equal(before[k], after[k]) for k in before), "the model changed"


@pytest.mark.parametrize("name", ["every_layer", "convnet", "three_layer_bn", "fc_net"])
def test_activations_agree_with_the_forward_pass(name):
    rng = np.random.default_rng(1)
    model = MODELS[name]()
    _randomize_state(model, rng)
    X = rng.normal(0, 1, (3, *SHAPES.get(name, (3, 8, 8))))
    acts = activations(model, X)
    assert list(acts) == list(layer_paths(model))  # every layer, in summary()'s order
    last = [p for p in acts if "." not in p][-1]
    np.testing.assert_allclose(acts[last], model.loss(X), rtol=1e-10, atol=1e-12)
    if isinstance(model, Network):  # each top-level layer's own (fused) test-mode forward
        ctx = Context(model.params, dict(model.buffers), None, "test")
        x = X
        for layer in model.root.layers:
            np.testing.assert_allclose(acts[layer.path], layer.forward(x, ctx)[0], atol=1e-10)
            x = acts[layer.path]
    some = list(acts)[1:3]
    assert list(activations(model, X, some)) == some


def test_layer_gradient_is_the_gradient_at_that_layer():
    rng = np.random.default_rng(2)
    model = MODELS["convnet_no_bn"]()
    X, d = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3))
    A, dA = layer_gradient(model, X, d, "block1")
    np.testing.assert_allclose(A, activations(model, X, ["block1"])["block1"])
    # block1 is followed by flatten and fc1 only: dA = dscores @ W.T
    np.testing.assert_allclose(dA, (d @ model.params["fc1.W"].T).reshape(A.shape), atol=1e-12)


def test_saliency_is_the_pixel_gradient_through_the_preprocessing():
    rng = np.random.default_rng(3)
    model = MODELS["convnet"]()
    pre = {"mean_image": rng.uniform(100, 150, (3, 8, 8)), "mean": np.array([1.0, -2, 3]),
           "std": np.array([50.0, 60, 70]), "dtype": "float64"}  # fmt: skip
    raw = rng.uniform(0, 255, (2, 3, 8, 8))
    y = np.array([0, 2])

    def score(r):
        s = model.loss(((r - pre["mean_image"]) - pre["mean"][:, None, None])
                       / pre["std"][:, None, None])  # fmt: skip
        return s

    num = eval_numerical_gradient_array(score, raw.copy(), np.eye(3)[y], h=1e-3)
    sal = saliency_map(model, raw, y, preprocess=pre)
    np.testing.assert_allclose(sal, np.abs(num).max(axis=1), rtol=1e-5, atol=1e-12)


def _colour_net():
    """Channel k of a 1x1 conv detects colour k (a ReLU of that channel minus 100); class
    k's score is the mean of detector k (global average pool, identity linear layer)."""
    spec = [{"type": "conv2d", "filters": 3, "kernel_size": 1}, "relu", "global_avgpool",
            {"type": "linear", "units": 3}]  # fmt: skip
    model = Network(spec, input_dim=(3, 8, 8), num_classes=3, dtype=np.float64, seed=0)
    model.params["conv1.W"] = np.eye(3)[:, :, None, None]
    model.params["conv1.b"] = np.full(3, -100.0)
    model.params["fc1.W"] = np.eye(3)
    return model


def test_grad_cam_lights_the_quadrant_the_class_is_seen_in():
    model = _colour_net()
    X = np.zeros((1, 3, 8, 8))
    X[0, 0, :4, :4] = 255  # red: top left
    X[0, 1, 4:, 4:] = 255  # green: bottom right
    X[0, 2, :4, 4:] = 255  # blue: top right
    for cls, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8)),
                                        (slice(0, 4), slice(4, 8))]):  # fmt: skip
        cam = grad_cam(model, X, [cls])[0]
        inside = np.zeros((8, 8), bool)
        inside[rows, cols] = True
        assert cam[inside].min() == 1.0 and cam[~inside].max() == 0.0, cls
    assert spatial_layers(model) == ["conv1", "relu1"]
    with pytest.raises(ValueError, match="layers with a spatial map are"):
        grad_cam(model, X, [0], layer="fc1")


@pytest.fixture(scope="module")
def shipped():
    model, info = pretrained()
    return model, dict(info["preprocess"])


def test_fooling_images_fool_the_trained_model(shipped):
    model, pre = shipped
    rng = np.random.default_rng(4)
    X = np.clip(pre["mean_image"] + rng.normal(0, 30, (2, 3, 32, 32)), 0, 255)
    first = saliency_map(model, X, 0, pre)  # any class: only the shapes are checked here
    assert first.shape == (2, 32, 32)
    from nndl.data import apply_preprocess

    before = model.loss(apply_preprocess(X, pre)).argmax(axis=1)
    target = (before + 1) % 10
    r = fooling_image(model, X, target, pre, step=20.0, max_iter=100)
    after = model.loss(apply_preprocess(r.images, pre)).argmax(axis=1)
    assert r.fooled.all() and (after == target).all()
    assert (r.iterations >= 1).all() and (r.linf > 0).all() and (r.l2 > 0).all()
    assert r.images.min() >= 0 and r.images.max() <= 255
    np.testing.assert_allclose(np.abs(r.images - X).max(axis=(1, 2, 3)), r.linf, rtol=1e-5)


def test_class_visualization_raises_the_score_and_is_repeatable(shipped):
    model, pre = shipped
    from nndl.data import apply_preprocess

    names = pre["class_names"]
    start = class_visualization(model, ["cat", 8], pre, iterations=1, step=1e-9,
                                class_names=names)  # fmt: skip
    imgs = class_visualization(model, ["cat", 8], pre, iterations=25, class_names=names)
    s0 = model.loss(apply_preprocess(start, pre))
    s1 = model.loss(apply_preprocess(imgs, pre))
    assert s1[0, 3] > s0[0, 3] + 1 and s1[1, 8] > s0[1, 8] + 1
    assert imgs.shape == (2, 3, 32, 32) and imgs.min() >= 0 and imgs.max() <= 255
    again = class_visualization(model, ["cat", 8], pre, iterations=25, class_names=names)
    assert np.array_equal(imgs, again)
    with pytest.raises(ValueError, match="unknown target class 'cow'"):
        class_visualization(model, "cow", pre, class_names=names)


def test_bad_input_names_the_function():
    model = MODELS["convnet"]()
    with pytest.raises(ValueError, match=r"input_gradient: expected X of shape \(N, 3, 8, 8\)"):
        input_gradient(model, np.zeros((1, 3, 9, 9)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="input_gradient: expected dscores of shape"):
        input_gradient(model, np.zeros((1, 3, 8, 8)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="activations: no layer 'nope'; the layers are"):
        activations(model, np.zeros((1, 3, 8, 8)), ["nope"])
    with pytest.raises(ValueError, match="saliency_map: expected y as 1 class indices"):
        saliency_map(model, np.zeros((1, 3, 8, 8)), [7])
    with pytest.raises(ValueError, match="expected an nndl model"):
        input_gradient(object(), np.zeros((1, 3)), np.zeros((1, 3)))


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def images(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(5)
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", ["saliency", "gradcam", "features"])
def test_cli_writes_the_maps(images, tmp_path, method):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("explain", "--pretrained", *images, "--method", method,
                                   "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert all(_png(out / f"img{i}_{method}.png") for i in range(2))
    assert stdout.count("predicted") == 2


def test_cli_fool_and_classvis(images, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("explain", "--pretrained", images[0], "--method", "fool",
                                   "--target", "frog", "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert _png(out / "img0_fool.png")
    assert "before" in stdout and "after frog" in stdout and "fooled into frog" in stdout
    code, stdout, stderr = run_cli("explain", "--pretrained", "--method", "classvis",
                                   "--target", "3", "--steps", "3", "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert _png(out / "classvis_cat.png") and stdout.startswith("classvis cat: predicted")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "fool", "--target", "12"], "target class 12 is out of range"),
        (["--method", "fool", "--target", "cow"], "unknown target class 'cow'"),
        (["--method", "fool"], "--method fool needs --target"),
        (["--method", "gradcam", "--layer", "nope"], "--layer 'nope' does not exist; the"),
        (["--method", "gradcam", "--layer", "fc1"], "--layer 'fc1' has no spatial map"),
        (["--method", "saliency", "--layer", "block1"], "--layer is for --method gradcam"),
        (["--method", "classvis"], "--method classvis takes no IMAGE"),
    ],
)
def test_cli_misuse(images, tmp_path, args, message):
    code, _, stderr = run_cli("explain", "--pretrained", images[0], *args, "--out", tmp_path)
    assert code == 2 and stderr.startswith("nndl explain: error:") and message in stderr, stderr


def test_cli_refuses_a_file_that_is_not_an_image(images, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, stderr = run_cli("explain", "--pretrained", bad, "--method", "saliency",
                              "--out", tmp_path / "o")  # fmt: skip
    assert code == 2 and stderr.startswith("nndl explain: error: cannot read image"), stderr
    code, _, stderr = run_cli("explain", "--pretrained", "--method", "gradcam", "--out", tmp_path)
    assert code == 2 and "needs at least one IMAGE" in stderr


@pytest.mark.parametrize("name", ["every_layer", "convnet", "three_layer_bn"])
def test_folded_and_layer_by_layer_walks_agree(name):
    # input_gradient folds each conv + batch norm pair into one conv; recording every
    # layer's output walks them one by one (and checks batch norm's own backward).
    from nndl.explain.gradients import _Walk, model_tree

    rng = np.random.default_rng(6)
    model = MODELS[name]()
    _randomize_state(model, rng)
    X = rng.normal(0, 1, (2, *SHAPES.get(name, (3, 8, 8))))
    d = rng.normal(size=(2, 3))
    tree = model_tree(model)
    walk = _Walk(tree, keep=None)
    out, cache = walk.forward(tree.root, X)
    dX = walk.backward(tree.root, d, cache).reshape(X.shape)
    np.testing.assert_allclose(out, model.loss(X), atol=1e-12)
    np.testing.assert_allclose(dX, input_gradient(model, X, d), rtol=1e-9, atol=1e-12)


def test_feature_maps_and_image_shapes(shipped):
    model, pre = shipped
    X = np.full((2, 3, 32, 32), 128.0)
    maps = feature_maps(model, X, "block2", pre)
    assert maps.shape == (2, 32, 8, 8)
    assert feature_maps(model, X, preprocess=pre).shape == (2, 16, 32, 32)  # block1.conv
    with pytest.raises(ValueError, match=r"saliency_map: expected images of shape \(N, 3, 32, 32"):
        saliency_map(model, np.zeros((1, 3, 28, 28)), [0], pre)
    with pytest.raises(ValueError, match="feature_maps: no spatial map at layer 'fc1'"):
        feature_maps(model, X, "fc1", pre)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny run folders: a residual spec with per-channel normalisation, and the
    hand-written ThreeLayerConvNet."""
    pytest.importorskip("matplotlib")
    from _cifar import write_synthetic_cifar10

    data = write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=20, n_test=20)
    spec = tmp_path_factory.mktemp("spec") / "net.json"
    spec.write_text(
        '[{"type": "conv_bn_relu_pool", "filters": 4}, {"type": "residual", "body": '
        '[{"type": "conv2d", "filters": 4}, "batchnorm2d"]}, "global_avgpool", '
        '{"type": "linear", "units": 10}]'
    )
    sizes = ["--num-training", "40", "--num-validation", "20", "--num-test", "20"]
    out = {}
    for name, flags in (("arch", ["--arch", spec, "--normalize", "channel"]),
                        ("three", ["--model", "three_layer_convnet"])):  # fmt: skip
        out[name] = tmp_path_factory.mktemp("runs") / name
        code, _, err = run_cli("train", "--data-dir", data, "--out", out[name], *flags, *sizes,
                               "--batch-size", "20", "--epochs", "1", "--quiet")  # fmt: skip
        assert code == 0, err
    return out


@pytest.mark.parametrize("run, method", [("arch", "gradcam"), ("arch", "saliency"),
                                         ("three", "gradcam"), ("three", "fool")])  # fmt: skip
def test_cli_on_run_folders(runs, images, tmp_path, run, method):
    out = tmp_path / "out"
    target = ["--target", "ship", "--steps", "3"] if method == "fool" else []
    code, stdout, stderr = run_cli("explain", runs[run], images[0], "--method", method,
                                   *target, "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert _png(out / f"img0_{method}.png") and stdout.startswith(f"{images[0]}: ")
