"""nndl.network.Network: a model from a spec. Gradient check end to end, the default
ConvNet as a spec, save/load, overfitting, summary figures, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nndl.callbacks import Callback
from nndl.cnn import ConvNet
from nndl.gradient_check import eval_numerical_gradient, rel_error
from nndl.models import MODELS, build_model, load_model, save_model
from nndl.network import Network
from nndl.solver import Solver

DEFAULT_CONVNET_SPEC = [
    {"type": "conv_bn_relu_pool", "filters": 16},
    {"type": "conv_bn_relu_pool", "filters": 32},
    {"type": "conv_bn_relu_pool", "filters": 64},
    {"type": "linear", "units": 10, "init": "lecun_normal"},
]


def small_resnet(dropout: float | None = None, **kw) -> Network:
    conv = {"type": "conv2d", "filters": 4, "bias": False}
    drop = [] if dropout is None else [{"type": "dropout", "p": dropout}]
    spec = [
        {"type": "conv_bn_relu", "filters": 4},
        {"type": "residual", "body": [conv, "batchnorm2d", "relu", conv, "batchnorm2d"]},
        "relu",
        {"type": "residual", "shortcut": "projection",
         "body": [{**conv, "filters": 6}, {"type": "batchnorm2d", "scale": False}, "gelu"]},
        {"type": "maxpool2d"},
        "global_avgpool",
        *drop,
        {"type": "linear", "units": 5, "scale": 0.5},
    ]  # fmt: skip
    return Network(spec, input_dim=(3, 6, 6), num_classes=5, **kw)


# --- the default ConvNet re-expressed -------------------------------------------------------


@pytest.mark.parametrize("dtype, reg", [(np.float32, 0.0), (np.float64, 0.3)])
def test_convnet_is_the_default_spec(dtype, reg):
    net = Network(DEFAULT_CONVNET_SPEC, input_dim=(3, 16, 16), reg=reg, dtype=dtype, seed=4)
    ref = ConvNet(input_dim=(3, 16, 16), num_filters=(16, 32, 64), reg=reg, dtype=dtype, seed=4)
    assert isinstance(ref, Network) and ref.root.config() == net.root.config()
    assert list(ref.params) == list(net.params)
    for k, v in ref.params.items():  # same seed, same draws in the same order
        assert np.array_equal(net.params[k], v), k
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3, 16, 16)), rng.integers(10, size=6)
    assert ref.loss(X, y)[0] == net.loss(X, y)[0]
    assert build_model("convnet", **ref.config).root.config() == ref.root.config()


def test_default_convnet_spec_matches_convnet_param_count():
    net = Network(DEFAULT_CONVNET_SPEC)
    ref = ConvNet(num_filters=(16, 32, 64))
    assert net.summary_data()["total_params"] == sum(v.size for v in ref.params.values())


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("reg, smoothing", [(0.7, 0.2)])
def test_residual_network_gradient_check(reg, smoothing):
    model = small_resnet(reg=reg, label_smoothing=smoothing, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((4, 3, 6, 6)), rng.integers(5, size=4)
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    assert "res1.body.conv1.W" in grads and "res2.shortcut.conv.W" in grads
    assert "res2.body.bn1.gamma" not in model.params  # scale=False: gamma fixed at 1
    for key, p in model.params.items():
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], p, verbose=False)
        if np.abs(num).max() < 1e-6:  # biases feeding batch norm: exactly zero gradient
            assert np.abs(grads[key]).max() < 1e-8, key
        else:
            assert rel_error(grads[key], num) < 1e-6, (key, rel_error(grads[key], num))


def test_reg_applies_to_weights_only():
    base = small_resnet(dtype=np.float64, seed=3)
    regd = small_resnet(reg=0.5, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((3, 3, 6, 6)), rng.integers(5, size=3)
    loss0, g0 = base.loss(X, y)
    loss1, g1 = regd.loss(X, y)
    weights = [k for k in base.params if k.endswith(".W")]
    assert weights and all(regd.param_specs[k].decay for k in weights)
    expected = loss0 + 0.25 * sum(float(np.sum(base.params[k] ** 2)) for k in weights)
    assert np.isclose(loss1, expected)
    for k in base.params:
        extra = 0.5 * base.params[k] if k in weights else 0.0
        np.testing.assert_allclose(g1[k], g0[k] + extra, atol=1e-12)


def test_frozen_layer_gets_zero_gradient_and_no_decay():
    spec = [
        {"type": "conv2d", "filters": 4, "kernel_size": 2, "pad": "valid", "trainable": False},
        "relu",
        "global_maxpool",
        {"type": "linear", "units": 3},
    ]
    model = Network(spec, input_dim=(2, 5, 5), num_classes=3, reg=1.0, seed=0)
    rng = np.random.default_rng(5)
    _, grads = model.loss(rng.standard_normal((4, 2, 5, 5)), rng.integers(3, size=4))
    assert not model.param_specs["conv1.W"].trainable
    assert np.all(grads["conv1.W"] == 0) and np.all(grads["conv1.b"] == 0)
    assert np.any(grads["fc1.W"] != 0)


def test_float32_and_float64_networks_from_one_seed_agree():
    a, b = small_resnet(seed=7), small_resnet(seed=7, dtype=np.float64)
    for k in a.params:
        assert a.params[k].dtype == np.float32 and b.params[k].dtype == np.float64
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-6)
    X = np.random.default_rng(8).standard_normal((3, 3, 6, 6))
    np.testing.assert_allclose(a.loss(X), b.loss(X), rtol=1e-4, atol=1e-5)


# --- save / load ----------------------------------------------------------------------------


def test_spec_model_save_load_gives_identical_scores(tmp_path):
    model = small_resnet(seed=9)
    rng = np.random.default_rng(10)
    X, y = rng.standard_normal((5, 3, 6, 6)), rng.integers(5, size=5)
    for _ in range(3):  # move the running statistics away from their initial values
        model.loss(X, y)
    assert not np.all(model.state_arrays()["block1.bn.running_var"] == 1)
    config = json.loads(json.dumps(model.config))
    assert build_model("network", **config).config == model.config
    path = save_model(tmp_path / "net", model)
    loaded, _ = load_model(path)
    assert type(loaded) is Network and loaded.config == model.config
    assert np.array_equal(loaded.loss(X), model.loss(X))
    assert set(loaded.state_arrays()) == set(model.state_arrays())


def test_state_dict_round_trip():
    model, other = small_resnet(seed=11), small_resnet(seed=12)
    X = np.random.default_rng(13).standard_normal((4, 3, 6, 6))
    model.loss(X, np.arange(4))
    other.load_state_dict(model.state_dict())
    assert np.array_equal(other.loss(X), model.loss(X))
    with pytest.raises(ValueError, match=r"Network.load_state_dict: expected params"):
        other.load_state_dict({"params": {"x": np.zeros(1)}, "buffers": {}})
    with pytest.raises(ValueError, match=r"Network.load_state_arrays: expected keys"):
        other.load_state_arrays({})


def test_convnet_state_dict_round_trip():
    a = ConvNet(input_dim=(3, 8, 8), num_filters=(2, 3), hidden_dims=(4,), seed=0)
    b = ConvNet(input_dim=(3, 8, 8), num_filters=(2, 3), hidden_dims=(4,), seed=1)
    X = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
    a.loss(X, np.arange(4))
    state = a.state_dict()
    b.load_state_dict(state)
    assert np.array_equal(b.loss(X), a.loss(X))
    state["params"]["block1.conv.W"][...] = 0  # copies: the model is unaffected
    assert np.any(a.params["block1.conv.W"] != 0)


def test_layers_given_as_modules_build_the_same_network():
    import nndl.nn as nn

    mods = nn.Sequential([nn.ConvBNReLUPool(4), nn.GlobalMaxPool(), nn.Linear(3, bias=False)])
    spec = [{"type": "conv_bn_relu_pool", "filters": 4}, "global_maxpool",
            {"type": "linear", "units": 3, "bias": False}]  # fmt: skip
    a = Network(mods, input_dim=(3, 4, 4), num_classes=3, seed=0)
    b = Network(spec, input_dim=(3, 4, 4), num_classes=3, seed=0)
    assert a.config == b.config
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params)


class _StopAt(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_iteration_end(self, solver, iteration, loss):
        if iteration == self.iteration:
            solver.stop_training = True


def test_solver_checkpoint_resumes_a_network_exactly(tmp_path):
    rng = np.random.default_rng(14)
    X, y = rng.standard_normal((24, 3, 6, 6)), rng.integers(5, size=24)
    data = {"X_train": X[:16], "y_train": y[:16], "X_val": X[16:], "y_val": y[16:]}

    def solver(seed, **kw):
        # Dropout draws from the model's Generator, whose state the checkpoint carries.
        net = small_resnet(dropout=0.7, seed=seed, dtype=np.float64)
        return Solver(net, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                      batch_size=4, num_epochs=2, verbose=False, seed=0, **kw)  # fmt: skip

    full = solver(0)
    full.train()
    first = solver(0, callbacks=[_StopAt(5)])
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    resumed = solver(1)
    resumed.load_checkpoint(path)
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for k, v in full.training_params().items():
        assert np.array_equal(resumed.training_params()[k], v), k
    for k, v in full.model.state_arrays().items():
        assert np.array_equal(resumed.model.state_arrays()[k], v), k


# --- training -------------------------------------------------------------------------------


def test_residual_network_overfits_50_images():
    rng = np.random.default_rng(15)
    X = rng.standard_normal((50, 3, 8, 8)).astype(np.float32)
    y = rng.integers(10, size=50)  # random labels: only memorisation can fit them
    conv = {"type": "conv2d", "filters": 16, "bias": False}
    spec = [
        {"type": "conv_bn_relu_pool", "filters": 16},
        {"type": "residual", "body": [conv, "batchnorm2d", "relu", conv, "batchnorm2d"]},
        "relu",
        "global_avgpool",
        {"type": "linear", "units": 10},
    ]
    model = Network(spec, input_dim=(3, 8, 8), seed=0)
    # Validating on the training set makes the kept "best" parameters the best fit.
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                    batch_size=25, num_epochs=40, verbose=False, seed=0)  # fmt: skip
    solver.train()
    assert solver.train_acc_history[0] < 0.3
    assert solver.check_accuracy(X, y) == 1.0


# --- summary --------------------------------------------------------------------------------


def test_summary_figures_match_hand_computation():
    spec = [
        {"type": "conv2d", "filters": 4, "kernel_size": 3},  # (3, 6, 6) -> (4, 6, 6)
        "batchnorm2d",
        "relu",
        {"type": "residual", "body": [{"type": "conv2d", "filters": 4, "bias": False}]},
        {"type": "maxpool2d"},  # -> (4, 3, 3)
        "flatten",  # -> (36,)
        {"type": "linear", "units": 5},
    ]
    model = Network(spec, input_dim=(3, 6, 6), num_classes=5)
    data = model.summary_data(batch_size=8)
    rows = {r["path"]: r for r in data["rows"]}
    assert list(rows) == ["conv1", "bn1", "relu1", "res1", "res1.body", "res1.body.conv1",
                          "pool1", "flatten1", "fc1"]  # fmt: skip
    assert rows["conv1"]["params"] == 4 * 3 * 9 + 4
    assert rows["conv1"]["flops"] == 2 * (3 * 9) * (4 * 36) + 4 * 36
    assert rows["bn1"]["params"] == 8 and rows["bn1"]["flops"] == 2 * 144
    assert rows["relu1"]["flops"] == 144
    assert rows["res1.body.conv1"]["params"] == 4 * 4 * 9
    assert rows["res1.body.conv1"]["flops"] == 2 * (4 * 9) * 144
    assert rows["res1"]["flops"] == 144 and rows["res1.body"]["flops"] == 0
    assert rows["pool1"]["output_shape"] == (4, 3, 3) and rows["pool1"]["flops"] == 3 * 36
    assert rows["flatten1"]["flops"] == 0 and rows["flatten1"]["activation_bytes"] == 0
    assert rows["fc1"]["params"] == 36 * 5 + 5 and rows["fc1"]["flops"] == 2 * 36 * 5 + 5
    total_params = 112 + 8 + 144 + 185
    assert data["total_params"] == total_params == sum(v.size for v in model.params.values())
    assert data["param_bytes"] == 4 * total_params
    assert data["total_flops"] == sum(r["flops"] for r in data["rows"])
    # Outputs that are new arrays: conv, bn, relu, body conv, residual add (4*36 each),
    # pool (36) and fc (5), for 8 examples in float32.
    assert data["activation_bytes"] == 8 * 4 * (5 * 144 + 36 + 5)
    text = model.summary(batch_size=8)
    assert "res1.body.conv1" in text and f"{total_params:,}" in text
    assert f"{data['total_flops']:,}" in text


# --- errors and registry ------------------------------------------------------------------


def test_registered_and_built_by_name():
    assert MODELS["network"] is Network
    model = build_model("network", layers=["flatten", {"type": "linear", "units": 3}],
                        input_dim=[2, 2, 2], num_classes=3, seed=0)  # fmt: skip
    assert model.name == "network" and model.loss(np.zeros((2, 2, 2, 2))).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"layers": ["flatten", {"type": "linear", "units": 4}]},
         r"Network: the last layer outputs \(4,\) per example; expected \(3,\)"),
        ({"layers": ["flatten"]}, r"the last layer outputs \(12,\) per example"),
        ({"layers": ["flatten", {"type": "linear", "units": 3}], "label_smoothing": 1.5},
         r"Network: expected label_smoothing in \[0, 1\]"),
        ({"layers": ["flatten", {"type": "linear", "units": 3}], "input_dim": 12},
         r"Network: expected input_dim as a list"),
        ({"layers": [{"type": "linear", "units": 3, "bias": 1}]},
         r"layer 'fc1' \(linear\): bias: expected true or false, got 1"),
    ],
)  # fmt: skip
def test_network_errors(kwargs, words):
    kwargs = {"input_dim": (3, 2, 2), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=words):
        Network(**kwargs)


def test_loss_checks_the_input_shape():
    model = Network(["flatten", {"type": "linear", "units": 3}], input_dim=(3, 2, 2), num_classes=3)
    with pytest.raises(ValueError, match=r"Network.loss: expected X of shape \(N, 3, 2, 2\)"):
        model.loss(np.zeros((4, 2, 2, 3)))
