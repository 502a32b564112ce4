"""Train / validation / test splits of uint8 images, preprocessed as
:func:`nndl.data.get_CIFAR10_data` does, for every data set of :mod:`nndl.datasets`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..validation import check_count

__all__ = ["DEFAULT_VALIDATION", "check_label_range", "fit_count", "make_splits"]

DEFAULT_VALIDATION = 1000
"""Validation images when none are asked for (or a tenth of a smaller training set)."""


def check_label_range(path: str | os.PathLike, y: np.ndarray, num_classes: int) -> None:
    """Refuse labels outside ``[0, num_classes)``, naming the file they came from."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{path}: labels must lie in [0, {num_classes}), got {int(y.min())} to {int(y.max())}"
        )


def fit_count(fn: str, name: str, value: int | None, available: int, default: int) -> int:
    """``value`` checked against ``available`` images; None: ``default`` (at most what is
    available)."""
    if value is None:
        return min(default, available)
    value = check_count(fn, name, value, 0)
    if value > available:
        raise ValueError(f"{fn}: {name} = {value}, more than the {available} images available")
    return value


def make_splits(
    fn: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str],
    *,
    num_training: int | None,
    num_validation: int | None,
    num_test: int | None,
    subtract_mean: bool = True,
    dtype: Any = np.float32,
) -> dict[str, Any]:
    """The dict of :func:`nndl.data.get_CIFAR10_data` from uint8 ``(N, C, H, W)`` images.

    Train is the first ``num_training`` images of ``x_train`` (None: all but the
    validation ones), validation the next ``num_validation`` (None: 1000, or a tenth of a
    smaller set), test the first ``num_test`` of ``x_test`` (None: all). The mean
    training image is subtracted from all three when ``subtract_mean``.
    """
    n = len(x_train)
    num_validation = fit_count(fn, "num_validation", num_validation, n - 1,
                               min(DEFAULT_VALIDATION, n // 10))  # fmt: skip
    num_training = fit_count(fn, "num_training", num_training, n - num_validation,
                             n - num_validation)  # fmt: skip
    if num_training < 1:
        raise ValueError(f"{fn}: num_training must be at least 1, got {num_training}")
    num_test = fit_count(fn, "num_test", num_test, len(x_test), len(x_test))
    needed = num_training + num_validation
    dtype = np.dtype(dtype)
    train_u8 = x_train[:num_training]
    out = {
        "X_train": train_u8.astype(dtype),
        "y_train": np.asarray(y_train[:num_training], np.int64).copy(),
        "X_val": x_train[num_training:needed].astype(dtype),
        "y_val": np.asarray(y_train[num_training:needed], np.int64).copy(),
        "X_test": x_test[:num_test].astype(dtype),
        "y_test": np.asarray(y_test[:num_test], np.int64).copy(),
    }
    if subtract_mean:
        # float64 accumulation: exact to float32 precision over tens of thousands of images.
        mean_image = train_u8.mean(axis=0, dtype=np.float64).astype(dtype)
        for key in ("X_train", "X_val", "X_test"):
            out[key] -= mean_image
    else:
        mean_image = np.zeros(x_train.shape[1:], dtype)
    out["mean_image"] = mean_image
    out["class_names"] = np.array([str(c) for c in class_names], dtype=str)
    return out
