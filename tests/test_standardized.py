"""Training images kept as 8-bit pixels and preprocessed batch by batch
(:class:`nndl.datasets.StandardizedImages`): every read is bit for bit what preprocessing the
whole float32 array gives, so a run trains exactly as before on a quarter of the memory."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.cli.inputs import load_data
from nndl.data import CIFAR10_pixels, data_fingerprint, get_CIFAR10_data, pixel_mean
from nndl.datasets import StandardizedImages, load_dataset
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_read_with_a_mean_image_equals_the_whole_array_minus_it(dtype):
    raw = _raw()
    mean_image = np.random.default_rng(3).uniform(0, 255, raw.shape[1:]).astype(np.float32)
    X = StandardizedImages(raw, dtype=dtype, mean_image=mean_image)
    full = raw.astype(np.float32)
    full -= mean_image  # what get_CIFAR10_data computes
    for idx in (3, slice(2, 9), np.array([7, 0, 7, 11])):
        np.testing.assert_array_equal(X[idx], full[idx].astype(dtype))  # bit for bit


def test_bad_inputs_are_refused_with_the_class_named():
    with pytest.raises(TypeError, match="StandardizedImages: expected raw images as a uint8"):
        StandardizedImages(_raw().astype(np.float32), MEAN, STD)
    with pytest.raises(ValueError, match=r"StandardizedImages: expected mean and std of shape"):
        StandardizedImages(_raw(), MEAN[:2], STD)
    with pytest.raises(ValueError, match="positive finite std"):
        StandardizedImages(_raw(), MEAN, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="expected mean and std .per channel., mean_image"):
        StandardizedImages(_raw())
    with pytest.raises(ValueError, match="expected mean and std .per channel., mean_image"):
        StandardizedImages(_raw(), MEAN)
    with pytest.raises(ValueError, match=r"a finite mean_image of shape \(3, 4, 5\), got \(3, 4\)"):
        StandardizedImages(_raw(), mean_image=np.zeros((3, 4), np.float32))


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



def test_load_data_keeps_mean_image_runs_as_bytes_with_the_float_runs_values(tiny_cifar):
    settings = {"num_training": 80, "num_validation": 20, "num_test": 20, "dtype": "float32",
                "normalize": "mean_image"}  # fmt: skip
    data, info = load_data(settings, str(tiny_cifar), progress=False)
    ref = get_CIFAR10_data(80, 20, 20, data_dir=tiny_cifar)  # what runs trained on before
    assert isinstance(data["X_train"], StandardizedImages)
    assert data["X_train"].raw.dtype == np.uint8
    for key in ("X_train", "X_val", "X_test", "mean_image"):
        got = data[key] if key != "mean_image" else info[key]
        np.testing.assert_array_equal(np.asarray(got), ref[key])  # bit for bit
    # the fingerprint of the float32 arrays: runs trained before resume on this data
    assert info["fingerprint"] == data_fingerprint(ref)


def test_the_pixel_fingerprint_is_the_float_arrays_over_several_blocks():
    rng = np.random.default_rng(5)
    pixels = {"X_train": rng.integers(0, 256, (2500, 3, 2, 2), dtype=np.uint8),
              "y_train": rng.integers(10, size=2500),
              "X_val": rng.integers(0, 256, (7, 3, 2, 2), dtype=np.uint8),
              "y_val": rng.integers(10, size=7)}  # fmt: skip
    mean_image = pixel_mean(pixels["X_train"])
    floats = {**pixels, "X_train": pixels["X_train"].astype(np.float32) - mean_image,
              "X_val": pixels["X_val"].astype(np.float32) - mean_image}  # fmt: skip
    assert data_fingerprint(pixels, mean_image=mean_image) == data_fingerprint(floats)
    pixels["X_train"][2400, 1, 0, 1] ^= 1  # one pixel of the last block
    assert data_fingerprint(pixels, mean_image=mean_image) != data_fingerprint(floats)
    empty = {**pixels, "X_val": pixels["X_val"][:0], "y_val": pixels["y_val"][:0]}  # no val split
    floats_empty = {**empty, "X_val": np.zeros((0, 3, 2, 2), np.float32)}
    val = ["X_val"]
    assert data_fingerprint(empty, val, mean_image) == data_fingerprint(floats_empty, val)


def test_cifar10_is_read_as_pixels_and_other_sets_refuse(tiny_cifar):
    data = load_dataset("cifar10", tiny_cifar, num_training=80, num_validation=20, num_test=20,
                        subtract_mean=False, dtype=np.uint8)  # fmt: skip
    ref = CIFAR10_pixels(80, 20, 20, tiny_cifar)
    for key in ("X_train", "X_val", "X_test", "y_train"):
        np.testing.assert_array_equal(data[key], ref[key])
    assert data["X_train"].dtype == np.uint8 and not data["mean_image"].any()
    with pytest.raises(ValueError, match="load_dataset: dtype uint8 gives the pixels as read"):
        load_dataset("cifar10", tiny_cifar, dtype=np.uint8)
    with pytest.raises(ValueError, match="available for cifar10, not mnist"):
        load_dataset("mnist", tiny_cifar, dtype=np.uint8, subtract_mean=False)


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
