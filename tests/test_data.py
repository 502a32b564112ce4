"""nndl.data: loading, splitting, preprocessing, folder resolution, malformed batches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _cifar import CLASS_NAMES, read_raw, synthetic_batch, write_pickle, write_synthetic_cifar10

import cs231n.data_utils
from nndl.data import (
    get_CIFAR10_data,
    load_CIFAR10,
    load_CIFAR_batch,
    load_class_names,
    resolve_data_dir,
)


def _images(raw: np.ndarray) -> np.ndarray:
    """Raw (n, 3072) rows as (n, 3, 32, 32): the R plane's 1024 values come first."""
    return raw.reshape(-1, 3, 32, 32).astype(np.float32)


def _raw_train(folder: Path):
    raw = read_raw(folder)
    x = np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)])
    y = np.concatenate([raw[f"data_batch_{i}"][1] for i in range(1, 6)])
    return x, y, raw["test_batch"][0], raw["test_batch"][1]


# ---------------------------------------------------------------- load_CIFAR10


def test_load_cifar10_shapes_dtypes_and_pixels(tiny_cifar):
    X_train, y_train, X_test, y_test = load_CIFAR10(tiny_cifar)
    assert X_train.shape == (100, 32, 32, 3) and X_test.shape == (20, 32, 32, 3)
    assert X_train.dtype == np.float32 and X_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.shape == (100,) and y_test.shape == (20,)
    assert X_train.flags["C_CONTIGUOUS"]
    raw_x, raw_y, raw_xt, raw_yt = _raw_train(tiny_cifar)
    np.testing.assert_array_equal(X_train, _images(raw_x).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(X_test, _images(raw_xt).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train, raw_y)
    np.testing.assert_array_equal(y_test, raw_yt)


def test_channel_order_red_plane_is_channel_0(tiny_cifar):
    X_train, *_ = load_CIFAR10(tiny_cifar)
    raw_x = _raw_train(tiny_cifar)[0]
    # Pixel (row 1, col 2) is at 32*1 + 2 in each 1024-value plane: R, then G, then B.
    for c in range(3):
        np.testing.assert_array_equal(X_train[:, 1, 2, c], raw_x[:, c * 1024 + 34])
    data = get_CIFAR10_data(10, 0, 0, subtract_mean=False, data_dir=tiny_cifar)
    np.testing.assert_array_equal(data["X_train"][:, 0, 1, 2], raw_x[:10, 34])


def test_load_cifar10_accepts_parent_and_batch_loader(tiny_cifar):
    a = load_CIFAR10(tiny_cifar)
    b = load_CIFAR10(tiny_cifar.parent)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    X, y = load_CIFAR_batch(tiny_cifar / "data_batch_2")
    np.testing.assert_array_equal(X, a[0][20:40])
    np.testing.assert_array_equal(y, a[1][20:40])


def test_bytes_keys_load_like_str_keys(tmp_path):
    str_folder = write_synthetic_cifar10(tmp_path / "s", seed=3)
    bytes_folder = write_synthetic_cifar10(tmp_path / "b", seed=3, bytes_keys=True)
    for u, v in zip(load_CIFAR10(str_folder), load_CIFAR10(bytes_folder), strict=True):
        np.testing.assert_array_equal(u, v)
    assert load_class_names(bytes_folder) == CLASS_NAMES


def test_load_cifar10_missing_files_names_them(tiny_cifar):
    (tiny_cifar / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"load_CIFAR10.*test_batch"):
        load_CIFAR10(tiny_cifar)


def test_cs231n_namespace_reexports_the_same_objects():
    assert cs231n.data_utils.load_CIFAR10 is load_CIFAR10
    assert cs231n.data_utils.get_CIFAR10_data is get_CIFAR10_data


# ---------------------------------------------------------------- get_CIFAR10_data


def test_split_is_first_train_next_val_first_test(tiny_cifar):
    raw_x, raw_y, raw_xt, raw_yt = _raw_train(tiny_cifar)
    d = get_CIFAR10_data(70, 20, 10, subtract_mean=False, data_dir=tiny_cifar)
    assert d["X_train"].shape == (70, 3, 32, 32) and d["X_val"].shape == (20, 3, 32, 32)
    assert d["X_test"].shape == (10, 3, 32, 32)
    for key in ("X_train", "X_val", "X_test"):
        assert d[key].dtype == np.float32 and d[key].flags["C_CONTIGUOUS"]
    for key in ("y_train", "y_val", "y_test"):
        assert d[key].dtype == np.int64
    np.testing.assert_array_equal(d["X_train"], _images(raw_x[:70]))
    np.testing.assert_array_equal(d["X_val"], _images(raw_x[70:90]))
    np.testing.assert_array_equal(d["X_test"], _images(raw_xt[:10]))
    np.testing.assert_array_equal(d["y_train"], raw_y[:70])
    np.testing.assert_array_equal(d["y_val"], raw_y[70:90])
    np.testing.assert_array_equal(d["y_test"], raw_yt[:10])
    np.testing.assert_array_equal(d["mean_image"], np.zeros((3, 32, 32), np.float32))
    assert d["class_names"].tolist() == CLASS_NAMES


def test_mean_subtraction_uses_the_train_mean_for_every_split(tiny_cifar):
    raw_x, _, raw_xt, _ = _raw_train(tiny_cifar)
    d = get_CIFAR10_data(50, 30, 15, data_dir=tiny_cifar)
    train_mean = raw_x[:50].astype(np.float64).mean(axis=0).reshape(3, 32, 32)
    assert d["mean_image"].shape == (3, 32, 32) and d["mean_image"].dtype == np.float32
    np.testing.assert_allclose(d["mean_image"], train_mean, rtol=1e-6)
    np.testing.assert_allclose(d["X_train"].mean(axis=0, dtype=np.float64), 0, atol=1e-4)
    # Val and test are shifted by the TRAIN mean, not by their own.
    np.testing.assert_allclose(d["X_val"], _images(raw_x[50:80]) - train_mean, atol=1e-4)
    np.testing.assert_allclose(d["X_test"], _images(raw_xt[:15]) - train_mean, atol=1e-4)
    assert abs(d["X_val"].mean(axis=0)).max() > 1  # their own mean is not subtracted


def test_the_whole_tiny_set_can_be_used(tiny_cifar):
    d = get_CIFAR10_data(95, 5, 20, data_dir=tiny_cifar)
    assert len(d["X_train"]) == 95 and len(d["X_val"]) == 5 and len(d["X_test"]) == 20


def test_reads_only_the_training_batches_it_needs(tiny_cifar):
    (tiny_cifar / "data_batch_5").write_bytes(b"\x80\x02}q\x00(")  # truncated
    d = get_CIFAR10_data(30, 10, 5, data_dir=tiny_cifar)
    assert len(d["X_train"]) == 30 and len(d["X_val"]) == 10
    with pytest.raises(ValueError, match="data_batch_5"):
        get_CIFAR10_data(70, 20, 5, data_dir=tiny_cifar)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"num_training": -1}, ValueError, "num_training >= 1"),
        ({"num_training": 0}, ValueError, "num_training >= 1"),
        ({"num_validation": -5}, ValueError, "num_validation >= 0"),
        ({"num_test": -1}, ValueError, "num_test >= 0"),
        ({"num_training": 90, "num_validation": 11}, ValueError, "101, more than the 100"),
        ({"num_training": 10, "num_validation": 0, "num_test": 21}, ValueError, "21, more than"),
        ({"num_training": 10.0}, TypeError, "num_training to be an int"),
        ({"num_test": True}, TypeError, "num_test to be an int"),
    ],
)
def test_bad_numbers_name_the_function(tiny_cifar, kwargs, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        get_CIFAR10_data(**kwargs, data_dir=tiny_cifar)
    assert str(info.value).startswith("get_CIFAR10_data:")


def test_default_numbers_exceed_a_tiny_set(tiny_cifar):
    with pytest.raises(ValueError, match=r"get_CIFAR10_data: .*50000.*100 training images"):
        get_CIFAR10_data(data_dir=tiny_cifar)


def test_learnable_signal_in_the_synthetic_set(tmp_path):
    """Nearest class mean beats chance clearly: helper tests can train on this set."""
    folder = write_synthetic_cifar10(tmp_path, n_per_batch=40, n_test=100)
    d = get_CIFAR10_data(200, 0, 100, data_dir=folder)
    feats = d["X_train"].mean(axis=(2, 3))
    means = np.stack([feats[d["y_train"] == c].mean(axis=0) for c in range(10)])
    test = d["X_test"].mean(axis=(2, 3))
    pred = np.argmin(((test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == d["y_test"]).mean() > 0.4


# ---------------------------------------------------------------- class names


def test_class_names_come_from_batches_meta(tiny_cifar):
    meta = {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
    write_pickle(tiny_cifar / "batches.meta", meta)
    assert load_class_names(tiny_cifar) == meta["label_names"]
    names = get_CIFAR10_data(5, 0, 0, data_dir=tiny_cifar)["class_names"]
    assert names.tolist() == meta["label_names"]


# ---------------------------------------------------------------- malformed batches


def _bad_batches(n: int = 20):
    good = synthetic_batch(n, np.random.default_rng(0), "x")
    wrong_dtype = dict(good, data=good["data"].astype(np.float32))
    wrong_shape = dict(good, data=good["data"][:, :100])
    flat = dict(good, data=good["data"].ravel())
    few_labels = dict(good, labels=good["labels"][:-1])
    bad_label = dict(good, labels=[10] + good["labels"][1:])
    text_labels = dict(good, labels=["cat"] * n)
    no_labels = {k: v for k, v in good.items() if k != "labels"}
    cases = {
        "truncated": (pickle.dumps(good, protocol=2)[:500], "truncated"),
        "empty": (b"", "truncated"),
        "garbage": (b"not a pickle at all", "not a readable pickle"),
        "not a dict": (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict"),
        "no labels": (pickle.dumps(no_labels, protocol=2), r"missing key\(s\) \['labels'\]"),
        "float data": (pickle.dumps(wrong_dtype, protocol=2), "uint8 array of shape"),
        "short rows": (
            pickle.dumps(wrong_shape, protocol=2),
            r"got uint8 array of shape \(20, 100\)",
        ),
        "flat data": (pickle.dumps(flat, protocol=2), "uint8 array of shape"),
        "label count": (pickle.dumps(few_labels, protocol=2), "19 labels for 20 images"),
        "label range": (pickle.dumps(bad_label, protocol=2), r"labels must lie in \[0, 10\)"),
        "text labels": (pickle.dumps(text_labels, protocol=2), "list of ints"),
    }
    return [pytest.param(*case, id=name) for name, case in cases.items()]


@pytest.mark.parametrize("payload, pattern", _bad_batches())
def test_malformed_batch_is_a_value_error_naming_the_file(tiny_cifar, payload, pattern):
    path = tiny_cifar / "data_batch_3"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=pattern) as info:
        load_CIFAR10(tiny_cifar)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="data_batch_3"):
        get_CIFAR10_data(60, 0, 0, data_dir=tiny_cifar)


# ---------------------------------------------------------------- resolve_data_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("NNDL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def test_resolve_from_argument_folder_or_parent(clean_env, tiny_cifar):
    assert resolve_data_dir(tiny_cifar) == tiny_cifar
    assert resolve_data_dir(tiny_cifar.parent) == tiny_cifar
    assert resolve_data_dir(str(tiny_cifar.parent), download=False) == tiny_cifar


def test_argument_wins_over_environment(clean_env, tmp_path, tiny_cifar):
    other = write_synthetic_cifar10(tmp_path / "other")
    clean_env.setenv("NNDL_DATA_DIR", str(other.parent))
    assert resolve_data_dir() == other
    assert resolve_data_dir(tiny_cifar) == tiny_cifar
    clean_env.setenv("NNDL_DATA_DIR", str(other))
    assert resolve_data_dir() == other


def test_cache_folder_is_the_last_resort(clean_env, tmp_path):
    cached = write_synthetic_cifar10(tmp_path / "xdg" / "nndl")
    assert resolve_data_dir(download=False) == cached
    clean_env.delenv("XDG_CACHE_HOME")
    clean_env.setenv("HOME", str(tmp_path / "home"))
    home_cached = write_synthetic_cifar10(tmp_path / "home" / ".cache" / "nndl")
    assert resolve_data_dir(download=False) == home_cached


def test_missing_data_without_download_says_where_to_put_it(clean_env, tmp_path):
    target = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        resolve_data_dir(target, download=False)
    msg = str(info.value)
    assert msg.startswith("resolve_data_dir:")
    assert str(target / "cifar-10-batches-py") in msg
    for word in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert word in msg
    assert "NNDL_DATA_DIR" in msg and "--data-dir" in msg
    assert not target.exists()


def test_partial_folder_is_reported_not_overwritten(clean_env, tiny_cifar):
    (tiny_cifar / "data_batch_4").unlink()
    before = sorted(os.listdir(tiny_cifar))
    with pytest.raises(
        FileNotFoundError, match=r"only part of CIFAR-10; missing \['data_batch_4'\]"
    ):
        resolve_data_dir(tiny_cifar)
    assert sorted(os.listdir(tiny_cifar)) == before


# ---------------------------------------------------------------- the real data set


def test_real_cifar10_split(real_cifar):
    d = get_CIFAR10_data(data_dir=real_cifar, download=False)
    assert d["X_train"].shape == (49000, 3, 32, 32) and d["y_train"].shape == (49000,)
    assert d["X_val"].shape == (1000, 3, 32, 32) and d["y_val"].shape == (1000,)
    assert d["X_test"].shape == (1000, 3, 32, 32) and d["y_test"].shape == (1000,)
    assert d["X_train"].dtype == np.float32 and d["y_train"].dtype == np.int64
    assert d["class_names"].tolist() == CLASS_NAMES
    assert d["y_train"][:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert d["y_test"][:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    np.testing.assert_allclose(d["X_train"].mean(axis=0, dtype=np.float64), 0, atol=1e-3)
    # The README's per-channel training mean (all 50000 images, scaled to [0, 1]).
    np.testing.assert_allclose(
        d["mean_image"].mean(axis=(1, 2)) / 255, [0.4914, 0.4822, 0.4465], atol=2e-3
    )


def test_real_cifar10_load(real_cifar):
    X_train, y_train, X_test, y_test = load_CIFAR10(real_cifar)
    assert X_train.shape == (50000, 32, 32, 3) and X_test.shape == (10000, 32, 32, 3)
    assert y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert y_test[:16].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8]
    assert np.bincount(y_train[:10000], minlength=10).tolist() == [
        1005,
        974,
        1032,
        1016,
        999,
        937,
        1030,
        1001,
        1025,
        981,
    ]
    assert np.bincount(y_test).tolist() == [1000] * 10
    means = X_test.mean(axis=(0, 1, 2), dtype=np.float64) / 255
    np.testing.assert_allclose(means, [0.494214, 0.485131, 0.450409], atol=1e-5)
