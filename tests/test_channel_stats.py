"""Tests for nndl.data.channel_mean_std: per-channel statistics of training images."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.data import channel_mean_std


def test_matches_numpy_over_n_h_w_for_both_layouts():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((7, 3, 4, 5)) * [[[[1.0]], [[5.0]], [[0.1]]]] + 100).astype(np.float32)
    mean, std = channel_mean_std(X, chunk_size=3)  # chunks of 3, 3 and 1 images
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(mean, X64.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, X64.std(axis=(0, 2, 3)), rtol=1e-10)
    assert mean.dtype == std.dtype == np.float64 and mean.shape == (3,)
    mean_l, std_l = channel_mean_std(X.transpose(0, 2, 3, 1), channel_axis=3)
    np.testing.assert_allclose(mean_l, mean, rtol=1e-12)
    np.testing.assert_allclose(std_l, std, rtol=1e-10)


def test_uint8_images_and_normalising_gives_zero_mean_unit_std():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(10, 3, 6, 6), dtype=np.uint8)
    mean, std = channel_mean_std(X)
    Z = (X - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(Z.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=(0, 2, 3)), 1.0, rtol=1e-12)


def test_constant_channel_has_zero_std():
    X = np.zeros((2, 2, 3, 3))
    X[:, 1] = 7.0
    mean, std = channel_mean_std(X)
    np.testing.assert_array_equal(mean, [0.0, 7.0])
    np.testing.assert_array_equal(std, [0.0, 0.0])


@pytest.mark.parametrize(
    ("X", "kwargs", "err", "match"),
    [
        (np.zeros((2, 3, 4)), {}, ValueError, r"expected X of shape \(N, C, H, W\)"),
        (np.zeros((0, 3, 2, 2)), {}, ValueError, "expected at least one image"),
        (np.zeros((1, 3, 2, 2)), {"channel_axis": 2}, ValueError, "expected channel_axis"),
        (np.zeros((1, 3, 2, 2), dtype=bool), {}, TypeError, "expected a numeric array"),
        (np.zeros((1, 3, 2, 2)), {"chunk_size": 0}, ValueError, "expected chunk_size >= 1"),
    ],
)
def test_bad_input(X, kwargs, err, match):
    with pytest.raises(err, match=rf"^channel_mean_std: {match}"):
        channel_mean_std(X, **kwargs)


def test_exported_without_disturbing_the_module_api():
    import nndl.data

    assert "channel_mean_std" in nndl.data.__all__
    assert {"load_CIFAR10", "get_CIFAR10_data"} <= set(nndl.data.__all__)
    ns: dict = {}
    exec("from nndl.data import *", ns)
    assert ns["channel_mean_std"] is channel_mean_std
