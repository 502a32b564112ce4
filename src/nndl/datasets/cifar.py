"""CIFAR-10 (through :mod:`nndl.data`, results unchanged) and CIFAR-100 (the official
python version, read with :mod:`nndl.io.safe_pickle`; fine or coarse labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import (
    IMAGE_SHAPE,
    CIFAR10_pixels,
    _as_str,
    _read_dict,
    get_CIFAR10_data,
    resolve_data_dir,
)
from .fetch import ensure_archive
from .splits import check_label_range, make_splits

__all__ = ["CIFAR100_FILES", "CIFAR100_MD5", "CIFAR100_URLS", "load_cifar10", "load_cifar100"]

CIFAR100_FILES = ("train", "test", "meta")
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TARBALL = "cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_URLS = ("https://www.cs.toronto.edu/~kriz",)
_ROW = 3 * 32 * 32


def load_cifar10(root: Any = None, *, download: bool = True, progress: bool = False,
                 num_training=None, num_validation=None, num_test=None, subtract_mean=True,
                 dtype: Any = np.float32) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """(splits, folder) from :func:`nndl.data.get_CIFAR10_data`; None sizes: all of
    the training images but 1000 for validation, all 10,000 test images. ``dtype=np.uint8``
    (with ``subtract_mean=False``): the 8-bit pixels as read (:func:`nndl.data.CIFAR10_pixels`),
    ``mean_image`` zeros."""
    folder = resolve_data_dir(root, download=download, progress=progress)
    num_validation = 1000 if num_validation is None else num_validation
    sizes = {
        "num_training": 50000 - num_validation if num_training is None else num_training,
        "num_validation": num_validation,
        "num_test": 10000 if num_test is None else num_test,
    }
    if np.dtype(dtype) == np.uint8:
        if subtract_mean:
            raise ValueError(
                "load_dataset: dtype uint8 gives the pixels as read; the mean image is "
                "subtracted from float images (subtract_mean=False)"
            )
        data = CIFAR10_pixels(**sizes, data_dir=folder, fn="load_dataset")
        return {**data, "mean_image": np.zeros(IMAGE_SHAPE, np.float32)}, folder
    data = get_CIFAR10_data(**sizes, subtract_mean=subtract_mean, data_dir=folder)
    if np.dtype(dtype) != np.float32:
        for key in ("X_train", "X_val", "X_test", "mean_image"):
            data[key] = data[key].astype(dtype)
    return data, folder


def _read_split(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _read_dict(path, ("data", label_key))
    data = d["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW):  # fmt: skip
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: expected 'data' as uint8 (N, {_ROW}), got {got}")
    try:
        y = np.asarray(d[label_key])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {label_key!r} is not a list of ints ({exc})") from None
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu") or len(y) != len(data):
        raise ValueError(f"{path}: expected {len(data)} integer {label_key!r}, got {y.dtype} "
                         f"{y.shape}")  # fmt: skip
    check_label_range(path, y, num_classes)
    return data.reshape(len(data), 3, 32, 32), y.astype(np.int64)


def _names(path: Path, key: str, count: int) -> list[str]:
    names = _read_dict(path, (key,))[key]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str | bytes) for n in names):
        raise ValueError(f"{path}: expected {key!r} as a list of strings")
    if len(names) != count:
        raise ValueError(f"{path}: expected {count} {key}, got {len(names)}")
    return [_as_str(n) for n in names]


def load_cifar100(root: Any = None, *, labels: str = "fine", download: bool = True,
                  progress: bool = False, **sizes: Any) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """(splits, folder) of CIFAR-100 with its ``fine`` (100) or ``coarse`` (20) labels."""
    if labels not in ("fine", "coarse"):
        raise ValueError(f"load_dataset: CIFAR-100 labels are 'fine' or 'coarse', got {labels!r}")
    folder = ensure_archive("CIFAR-100", root, CIFAR100_FOLDER, CIFAR100_FILES, CIFAR100_TARBALL,
                            CIFAR100_MD5, CIFAR100_URLS, download=download,
                            progress=progress)  # fmt: skip
    count = 100 if labels == "fine" else 20
    names = _names(folder / "meta", f"{labels}_label_names", count)
    x_train, y_train = _read_split(folder / "train", f"{labels}_labels", count)
    x_test, y_test = _read_split(folder / "test", f"{labels}_labels", count)
    return make_splits("load_dataset", x_train, y_train, x_test, y_test, names, **sizes), folder
