"""TwoLayerNet and FullyConnectedNet: gradients, initial loss, dropout and batch norm."""

import math

import numpy as np
import pytest

from nndl.fc_net import FullyConnectedNet, TwoLayerNet
from nndl.gradient_check import eval_numerical_gradient, rel_error


def _data(N=3, D=15, C=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)), rng.integers(C, size=N)


def _grad_errors(model, X, y, reseed=None):
    """Relative error of every analytic gradient; ``reseed`` re-seeds the model's RNG
    before each loss evaluation, so dropout draws the same masks every time."""

    def loss(_=None):
        if reseed is not None:
            model.rng = np.random.default_rng(reseed)
        return model.loss(X, y)

    _, grads = loss()
    errors = {}
    for name, p in model.params.items():
        num = eval_numerical_gradient(lambda _: loss()[0], p, verbose=False)
        errors[name] = (rel_error(num, grads[name]), float(np.abs(num - grads[name]).max()))
    return errors


@pytest.mark.parametrize("reg", [0.0, 3.14])
def test_two_layer_net_gradients(reg):
    X, y = _data(D=12)
    model = TwoLayerNet(input_dim=12, hidden_dim=8, weight_scale=1e-1, reg=reg,
                        dtype=np.float64, seed=1)  # fmt: skip
    errors = _grad_errors(model, X, y)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(rel for rel, _ in errors.values()) < 1e-6, errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"reg": 3.14},
        {"use_batchnorm": True},
        {"use_batchnorm": True, "reg": 0.7},
        {"dropout": 0.6},
        {"dropout": 0.6, "use_batchnorm": True, "reg": 0.3},
    ],
)
def test_fully_connected_net_gradients(kwargs):
    X, y = _data(N=4)
    model = FullyConnectedNet([9, 7], input_dim=15, weight_scale=1e-1, dtype=np.float64,
                              seed=3, **kwargs)  # fmt: skip
    errors = _grad_errors(model, X, y, reseed=11)
    expected = {f"{k}{i}" for i in (1, 2, 3) for k in "Wb"}
    if kwargs.get("use_batchnorm"):
        expected |= {f"{k}{i}" for i in (1, 2) for k in ("gamma", "beta")}
    assert set(errors) == expected
    for name, (rel, abs_err) in errors.items():
        if kwargs.get("use_batchnorm") and name in ("b1", "b2"):
            # A bias feeding batch norm has an exactly zero gradient; only the rounding
            # noise of the numerical one remains, so compare it absolutely.
            assert abs_err < 1e-8, (name, abs_err)
        else:
            assert rel < 1e-5, (name, rel)


def test_batchnorm_bias_gradient_is_zero():
    X, y = _data(N=5)
    model = FullyConnectedNet([6], input_dim=15, use_batchnorm=True, dtype=np.float64, seed=0)
    _, grads = model.loss(X, y)
    assert np.abs(grads["b1"]).max() < 1e-12
    assert np.abs(grads["gamma1"]).max() > 1e-6


@pytest.mark.parametrize("cls", [TwoLayerNet, FullyConnectedNet])
def test_initial_loss_is_log_num_classes(cls):
    X, y = _data(N=20, D=3 * 32 * 32)
    model = (
        cls(weight_scale=1e-3, seed=0)
        if cls is TwoLayerNet
        else cls([50, 40], weight_scale=1e-3, seed=0)
    )
    loss, _ = model.loss(X, y)
    assert abs(loss - math.log(10)) < 1e-3


def test_regularisation_adds_half_l2():
    X, y = _data()
    plain = FullyConnectedNet([6, 5], input_dim=15, dtype=np.float64, seed=4)
    reg = FullyConnectedNet([6, 5], input_dim=15, reg=0.8, dtype=np.float64, seed=4)
    l0, g0 = plain.loss(X, y)
    l1, g1 = reg.loss(X, y)
    penalty = sum(np.sum(plain.params[f"W{i}"] ** 2) for i in (1, 2, 3))
    assert l1 == pytest.approx(l0 + 0.5 * 0.8 * penalty, rel=1e-12)
    assert np.allclose(g1["W2"], g0["W2"] + 0.8 * plain.params["W2"])
    assert np.array_equal(g1["b2"], g0["b2"])


def test_init_shapes_dtype_and_scale():
    model = FullyConnectedNet([300, 200], input_dim=400, weight_scale=0.05, use_batchnorm=True,
                              seed=0)  # fmt: skip
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes["W1"] == (400, 300) and shapes["W2"] == (300, 200) and shapes["W3"] == (200, 10)
    assert shapes["gamma2"] == (200,) and "gamma3" not in shapes
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert abs(model.params["W1"].std() - 0.05) < 0.002
    assert not model.params["b1"].any() and (model.params["gamma1"] == 1).all()


def test_computes_in_float32():
    X, y = _data(N=6)
    model = FullyConnectedNet([8], input_dim=15, use_batchnorm=True, dropout=0.5, seed=0)
    loss, grads = model.loss(X, y)  # float64 inputs are cast to the model's dtype
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.loss(X).dtype == np.float32


def test_seed_pins_the_dropout_mask_as_in_cs231n():
    X, y = _data(N=8)
    a = FullyConnectedNet([30], input_dim=15, dropout=0.5, seed=5, dtype=np.float64)
    b = FullyConnectedNet([30], input_dim=15, dropout=0.5, seed=5, dtype=np.float64)
    la1, la2 = a.loss(X, y)[0], a.loss(X, y)[0]
    assert la1 == la2 == b.loss(X, y)[0]  # the classic seed fixes the mask
    # Classic notebooks gradient-check a seeded dropout net unchanged.
    loss, grads = a.loss(X, y)
    num = eval_numerical_gradient(lambda _: a.loss(X, y)[0], a.params["W1"], verbose=False)
    assert rel_error(num, grads["W1"]) < 1e-6


def test_unpinned_dropout_masks_come_from_the_model_generator():
    X, y = _data(N=8)
    a = FullyConnectedNet([30], input_dim=15, dropout=0.5, seed=5, dtype=np.float64)
    b = FullyConnectedNet([30], input_dim=15, dropout=0.5, seed=5, dtype=np.float64)
    for model in (a, b):
        del model.dropout_param["seed"]
    la1, la2 = a.loss(X, y)[0], a.loss(X, y)[0]
    lb1, lb2 = b.loss(X, y)[0], b.loss(X, y)[0]
    assert (la1, la2) == (lb1, lb2)  # same seed, same sequence of masks
    assert la1 != la2  # a fresh mask each call
    state = np.random.get_state()[1].copy()
    a.loss(X, y)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_dropout_is_identity_in_test_mode_and_keep_probability():
    X, _ = _data(N=4)
    model = FullyConnectedNet([20], input_dim=15, dropout=0.5, seed=0, dtype=np.float64)
    assert np.array_equal(model.loss(X), model.loss(X))
    assert model.dropout_param["p"] == 0.5  # probability of keeping a unit
    assert FullyConnectedNet([5], input_dim=15, dropout=0).dropout_param is None
    assert FullyConnectedNet([5], input_dim=15, dropout=1).dropout_param is None
    with pytest.raises(ValueError, match="FullyConnectedNet: expected dropout"):
        FullyConnectedNet([5], input_dim=15, dropout=1.5)


def test_batchnorm_uses_running_stats_when_y_is_none():
    X, y = _data(N=10)
    model = FullyConnectedNet([6], input_dim=15, use_batchnorm=True, dtype=np.float64, seed=0)
    before = model.state_arrays()["running_mean1"].copy()
    model.loss(X)
    assert np.array_equal(model.state_arrays()["running_mean1"], before)
    model.loss(X, y)
    assert not np.array_equal(model.state_arrays()["running_mean1"], before)
    # Test mode: each row's scores do not depend on the other rows of the batch.
    assert np.allclose(model.loss(X)[:3], model.loss(X[:3]))


def test_bad_dtype_is_a_clear_error():
    with pytest.raises(TypeError, match="TwoLayerNet: expected a floating point dtype"):
        TwoLayerNet(dtype=np.int32)
