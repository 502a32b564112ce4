"""Training images kept as 8-bit pixels and standardised batch by batch
(:class:`nndl.datasets.StandardizedImages`): every read is bit for bit what standardising the
whole float32 array gives, so a run trains exactly as before on a quarter of the memory."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.cli.inputs import load_data
from nndl.datasets import StandardizedImages
from nndl.network import Network
from nndl.solver import Solver
from nndl.validation import check_finite

MEAN = np.array([125.3, 123.0, 113.9], np.float32)
STD = np.array([63.0, 62.1, 66.7], np.float32)


def _raw(N=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(N, 3, 4, 5), dtype=np.uint8)


def _float_path(raw, dtype=np.float32):
    """The whole-array standardisation nndl did before (cli.inputs.load_data)."""
    X = raw.astype(np.float32)
    X -= MEAN[:, None, None]
    X /= STD[:, None, None]
    return X.astype(dtype, copy=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_read_equals_the_whole_array_standardised(dtype):
    raw = _raw()
    X = StandardizedImages(raw, MEAN, STD, dtype)
    full = _float_path(raw, dtype)
    assert (len(X), X.shape, X.ndim, X.dtype) == (12, raw.shape, 4, np.dtype(dtype))
    for idx in (3, slice(2, 9), np.array([7, 0, 7, 11]), slice(None, 5000)):
        got = X[idx]
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, full[idx])  # bit for bit
    np.testing.assert_array_equal(np.asarray(X), full)
    assert X.raw.nbytes * 4 == full.astype(np.float32).nbytes


def test_bad_inputs_are_refused_with_the_class_named():
    with pytest.raises(TypeError, match="StandardizedImages: expected raw images as a uint8"):
        StandardizedImages(_raw().astype(np.float32), MEAN, STD)
    with pytest.raises(ValueError, match=r"StandardizedImages: expected mean and std of shape"):
        StandardizedImages(_raw(), MEAN[:2], STD)
    with pytest.raises(ValueError, match="positive finite std"):
        StandardizedImages(_raw(), MEAN, np.array([1.0, 0.0, 1.0]))


def test_it_is_finite_without_a_scan():
    class Unread(StandardizedImages):
        def __getitem__(self, idx):  # a scan would build the float array from here
            raise AssertionError("read")

    check_finite("test", "X", Unread(_raw(), MEAN, STD))


def test_load_data_keeps_cifar_training_pixels_as_bytes(tiny_cifar):
    settings = {"num_training": 80, "num_validation": 20, "num_test": 20, "dtype": "float32",
                "normalize": "channel"}  # fmt: skip
    data, info = load_data(settings, str(tiny_cifar), progress=False)
    X = data["X_train"]
    assert isinstance(X, StandardizedImages) and X.raw.dtype == np.uint8
    assert isinstance(data["X_val"], np.ndarray) and isinstance(data["X_test"], np.ndarray)
    raw = X.raw.astype(np.float32)
    raw -= info["mean"][:, None, None]
    raw /= info["std"][:, None, None]
    np.testing.assert_array_equal(X[:], raw)
    pixels, pixels_info = load_data(settings, str(tiny_cifar), subtract_mean=False,
                                    progress=False)  # fmt: skip
    assert isinstance(pixels["X_train"], np.ndarray)  # unstandardised: float pixels as before
    np.testing.assert_array_equal(pixels["X_train"], X.raw)
    assert pixels_info["fingerprint"] == info["fingerprint"]  # of the float32 pixels: runs resume
    mean_image = {**settings, "normalize": "mean_image"}
    assert isinstance(load_data(mean_image, str(tiny_cifar), progress=False)[0]["X_train"],
                      np.ndarray)  # mean-image subtraction stays float  # fmt: skip


SPEC = [{"type": "conv_bn_act", "name": "block", "filters": 4}, {"type": "flatten"},
        {"type": "linear", "name": "head", "units": 3}]  # fmt: skip


def _train(X, y):
    model = Network(SPEC, input_dim=(3, 4, 5), num_classes=3, seed=0)
    data = {"X_train": X, "y_train": y, "X_val": _float_path(_raw(6, 9)), "y_val": y[:6]}
    solver = Solver(model, data, update_rule="sgd_momentum", batch_size=4, num_epochs=2,
                    optim_config={"learning_rate": 0.05}, augment=["random_flip"],
                    verbose=False, seed=0, num_train_samples=8)  # fmt: skip
    solver.train()
    return model.params, solver.train_acc_history


def test_a_run_on_bytes_trains_exactly_as_on_floats():
    raw = _raw(16, 1)
    y = np.random.default_rng(2).integers(3, size=16)
    params, acc = _train(StandardizedImages(raw, MEAN, STD), y)
    params_ref, acc_ref = _train(_float_path(raw), y)
    assert acc == acc_ref
    for key, value in params_ref.items():
        np.testing.assert_array_equal(params[key], value)
