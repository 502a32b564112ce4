"""ThreeLayerConvNet and ConvNet: SPEC gradient checks, init, loss, overfitting."""

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from nndl.cnn import ConvNet, ThreeLayerConvNet
from nndl.gradient_check import eval_numerical_gradient, rel_error
from nndl.solver import Solver

GRAD_SEED = 1


def _grad_errors(model, X, y, h=1e-5, reseed=None):
    """{name: (relative error, max absolute error)} of analytic vs numerical gradients."""

    def loss():
        if reseed is not None:
            model.rng = np.random.default_rng(reseed)
        return model.loss(X, y)

    _, grads = loss()
    out = {}
    for name, p in model.params.items():
        num = eval_numerical_gradient(lambda _: loss()[0], p, verbose=False, h=h)
        out[name] = (rel_error(num, grads[name]), float(np.abs(num - grads[name]).max()))
    return out


@pytest.mark.parametrize("use_batchnorm", [False, True])
@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_three_layer_convnet_gradient_check(use_batchnorm, reg, seed=GRAD_SEED):
    # SPEC: float64, num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7,
    # 2 inputs: W1 and W2 within about 1e-2, the rest below 1e-5.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, 3, 16, 16))
    y = rng.integers(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7,
                              weight_scale=0.1, reg=reg, dtype=np.float64,
                              use_batchnorm=use_batchnorm, seed=seed)  # fmt: skip
    errors = _grad_errors(model, X, y)
    names = {"W1", "b1", "W2", "b2", "W3", "b3"}
    if use_batchnorm:
        names |= {"gamma1", "beta1", "gamma2", "beta2"}
    assert set(errors) == names
    for name, (rel, abs_err) in errors.items():
        if name in ("W1", "W2"):
            assert rel <= 1e-2, (name, rel)
        elif use_batchnorm and name in ("b1", "b2"):
            # Biases feeding batch norm have an exactly zero gradient.
            assert abs_err < 1e-8, (name, abs_err)
        else:
            assert rel < 1e-5, (name, rel)


def test_three_layer_convnet_init_matches_spec():
    model = ThreeLayerConvNet(weight_scale=1e-2, seed=0)  # defaults: 32 7x7 filters, 100 hidden
    p = model.params
    assert set(p) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert p["W1"].shape == (32, 3, 7, 7)
    assert p["W2"].shape == (32 * 16 * 16, 100)
    assert p["W3"].shape == (100, 10)
    assert all(v.dtype == np.float32 for v in p.values())
    assert abs(p["W2"].std() - 1e-2) < 2e-4 and abs(p["W2"].mean()) < 1e-4
    assert not (p["b1"].any() or p["b2"].any() or p["b3"].any())
    bn = ThreeLayerConvNet(num_filters=4, hidden_dim=6, use_batchnorm=True, seed=0)
    assert (bn.params["gamma1"] == 1).all() and bn.params["gamma2"].shape == (6,)
    assert not bn.params["beta1"].any() and bn.params["beta2"].shape == (6,)
    assert model.conv_param == {"stride": 1, "pad": 3}


def test_three_layer_convnet_scores_and_dtype():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3, 8, 8))  # float64 data, float32 model
    y = rng.integers(10, size=5)
    model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3, hidden_dim=6,
                              use_batchnorm=True, seed=0)  # fmt: skip
    scores = model.loss(X)
    assert scores.shape == (5, 10) and scores.dtype == np.float32
    loss, grads = model.loss(X, y)
    assert isinstance(loss, float)
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in model.params.items()}
    assert all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.parametrize(
    "model",
    [
        ThreeLayerConvNet(num_filters=8, filter_size=3, hidden_dim=20, seed=0),
        ThreeLayerConvNet(num_filters=8, filter_size=3, hidden_dim=20, use_batchnorm=True, seed=0),
        ConvNet(num_filters=(4, 8), hidden_dims=(16,), weight_scale=1e-3, seed=0),
    ],
    ids=["plain", "batchnorm", "convnet"],
)
def test_initial_loss_is_log10_with_small_weights(model):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3, 32, 32))
    y = rng.integers(10, size=20)
    loss, _ = model.loss(X, y)
    assert abs(loss - math.log(10)) < 0.02


def test_regularisation_adds_half_l2():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((3, 3, 8, 8)), rng.integers(10, size=3)
    kw = dict(input_dim=(3, 8, 8), num_filters=2, filter_size=3, hidden_dim=5, dtype=np.float64)
    l0, g0 = ThreeLayerConvNet(seed=2, **kw).loss(X, y)
    model = ThreeLayerConvNet(seed=2, reg=0.3, **kw)
    l1, g1 = model.loss(X, y)
    penalty = sum(np.sum(model.params[f"W{i}"] ** 2) for i in (1, 2, 3))
    assert l1 == pytest.approx(l0 + 0.15 * penalty, rel=1e-12)
    assert np.allclose(g1["W1"], g0["W1"] + 0.3 * model.params["W1"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_batchnorm": False, "reg": 0.2},
        {"dropout": 0.7, "pool_every": 2, "num_filters": (2, 3, 2)},
        {"hidden_dims": (), "dropout": 0.8},
    ],
)
def test_convnet_gradient_check(kwargs):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((3, 3, 8, 8)), rng.integers(10, size=3)
    kw = {"input_dim": (3, 8, 8), "num_filters": (2, 3), "hidden_dims": (5,), **kwargs}
    model = ConvNet(dtype=np.float64, seed=4, **kw)
    errors = _grad_errors(model, X, y, reseed=9)
    output_bias = list(model.params)[-1]
    for name, (rel, abs_err) in errors.items():
        if model.use_batchnorm and name.endswith(".b") and name != output_bias:
            assert abs_err < 1e-8, (name, abs_err)  # feeds batch norm: zero gradient
            continue
        assert rel < 1e-5, (name, rel)


def test_convnet_architecture_and_he_init():
    model = ConvNet(num_filters=(16, 32, 64), hidden_dims=(100,), seed=0)
    p = model.params
    assert p["block1.conv.W"].shape == (16, 3, 3, 3) and p["block3.conv.W"].shape == (64, 32, 3, 3)
    assert p["fc1.W"].shape == (64 * 4 * 4, 100) and p["fc2.W"].shape == (100, 10)
    gammas = {k for k in p if k.endswith(".gamma")}
    assert gammas == {"block1.bn.gamma", "block2.bn.gamma", "block3.bn.gamma", "bn1.gamma"}
    assert abs(p["block3.conv.W"].std() - math.sqrt(2 / (32 * 9))) < 0.005
    assert abs(p["fc1.W"].std() - math.sqrt(2 / 1024)) < 0.002
    assert abs(p["fc2.W"].std() - math.sqrt(1 / 100)) < 0.01
    kinds = [layer["type"] for layer in ConvNet.layers(num_filters=(4, 4, 4, 4), pool_every=2)]
    assert kinds[:4] == ["conv_bn_relu", "conv_bn_relu_pool"] * 2
    pooled = ConvNet(num_filters=(4, 4, 4, 4), pool_every=2, seed=0)
    assert pooled.params["fc1.W"].shape == (4 * 8 * 8, 10)
    fixed = ConvNet(num_filters=(8,), weight_scale=0.01, use_batchnorm=False, seed=0)
    assert abs(fixed.params["fc1.W"].std() - 0.01) < 5e-4
    assert not any("gamma" in k for k in fixed.params) and "block1.conv.W" in fixed.params


def test_odd_sizes_pool_with_floor():
    # 12 -> 6 -> 3 -> 1: the third block pools an odd map, outside the fused block (MNIST's
    # 28 -> 14 -> 7 -> 3); even sizes keep the fused blocks (CIFAR-10's spec is unchanged).
    layers = ConvNet.layers(input_dim=(3, 12, 12), num_filters=(4, 4, 4))
    assert [layer["type"] for layer in layers[:4]] == [
        "conv_bn_relu_pool", "conv_bn_relu_pool", "conv_bn_relu", "maxpool2d"]  # fmt: skip
    assert layers[3]["floor"] is True
    shapes = ConvNet.param_shapes(input_dim=(3, 12, 12), num_filters=(4, 4, 4))
    assert shapes["fc1.W"] == (4 * 1 * 1, 10)
    cifar = ConvNet.layers(input_dim=(3, 32, 32), num_filters=(4, 4, 4))
    assert [layer["type"] for layer in cifar[:3]] == ["conv_bn_relu_pool"] * 3
    with pytest.raises(ValueError, match=r"ConvNet: layer 'block2.conv'.* does not fit"):
        ConvNet(input_dim=(3, 4, 4), num_filters=(4, 4, 4), filter_size=2)
    with pytest.raises(ValueError, match="ThreeLayerConvNet: a 2x2 stride 2 max pool"):
        ThreeLayerConvNet(input_dim=(3, 15, 15))


def _template_data(N, C=10, shape=(3, 16, 16), noise=0.5, seed=0):
    """Images that are a class template plus noise: learnable, unlike pure noise."""
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((C, *shape)).astype(np.float32)
    y = rng.integers(C, size=N)
    X = templates[y] + noise * rng.standard_normal((N, *shape)).astype(np.float32)
    return X, y


@pytest.mark.parametrize(
    "model",
    [
        ThreeLayerConvNet(
            input_dim=(3, 16, 16),
            num_filters=8,
            filter_size=3,
            hidden_dim=50,
            weight_scale=5e-2,
            seed=0,
        ),  # fmt: skip
        ConvNet(input_dim=(3, 16, 16), num_filters=(8, 16), seed=0),
    ],
    ids=["three_layer", "convnet"],
)
def test_overfits_100_synthetic_images(model):
    X, y = _template_data(100, noise=1.0)
    data = {"X_train": X, "y_train": y, "X_val": X[:20], "y_val": y[:20]}
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 2e-3},
                    batch_size=25, num_epochs=8, verbose=False, seed=0)  # fmt: skip
    solver.train()
    assert solver.train_acc_history[0] < 0.4
    assert solver.train_acc_history[-1] >= 0.9


def _cifar_dir():
    root = os.environ.get("NNDL_DATA_DIR")
    candidates = [Path(root), Path(root) / "cifar-10-batches-py"] if root else []
    repo = Path(__file__).resolve().parents[1]
    candidates.append(repo.parent / "shared" / "cifar10" / "cifar-10-batches-py")
    for c in candidates:
        if (c / "data_batch_1").is_file():
            return c
    return None


@pytest.mark.skipif(_cifar_dir() is None, reason="CIFAR-10 not found")
def test_overfits_100_cifar_images():
    with open(_cifar_dir() / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    X = batch["data"][:100].reshape(100, 3, 32, 32).astype(np.float32)
    X -= X.mean(axis=0)
    y = np.asarray(batch["labels"][:100])
    data = {"X_train": X, "y_train": y, "X_val": X[:50], "y_val": y[:50]}
    # SPEC's recipe (adam 1e-3, batch 50, 10 epochs, weight_scale 1e-3) on a smaller net.
    model = ThreeLayerConvNet(num_filters=8, filter_size=3, hidden_dim=100, seed=0)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=50, num_epochs=10, verbose=False, seed=0)  # fmt: skip
    solver.train()
    assert solver.train_acc_history[0] < 0.3
    assert solver.train_acc_history[-1] >= 0.7
