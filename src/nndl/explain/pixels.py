"""Raw pixels and the model's input: the run's preprocessing, its inverse and its
gradient, class names, and the Gaussian blur the methods use.

A preprocessing ``pre`` is what :func:`nndl.data.apply_preprocess` takes (a run's
``preprocess.npz`` or ``nndl.models.pretrained()[1]['preprocess']``): the model's input
is ``(raw - mean_image) / std`` per channel (``std`` 1 without ``--normalize channel``,
``mean`` folded into the mean image). With ``pre`` None the "raw" images are the
model's inputs themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data import apply_preprocess

__all__ = [
    "to_input",
    "to_pixels",
    "pixel_gradient",
    "pixel_bounds",
    "class_index",
    "gaussian_blur",
]


def _check(fn: str, pre: Mapping[str, Any], X: np.ndarray) -> None:
    shape = np.shape(pre.get("mean_image")) if isinstance(pre, Mapping) else None
    if shape is None or len(shape) != 3:
        raise ValueError(
            f"{fn}: expected preprocess as a dict with mean_image (C, H, W) (a run's "
            f"preprocess.npz, or pretrained()[1]['preprocess']), got {type(pre).__name__}"
        )
    if X.ndim != 4 or X.shape[1:] != shape:
        raise ValueError(f"{fn}: expected images of shape (N, {', '.join(map(str, shape))}), "
                         f"got {X.shape}")  # fmt: skip


def _std(pre: Mapping[str, Any]) -> np.ndarray:
    C = np.shape(pre["mean_image"])[0]
    std = pre.get("std")
    return np.ones(C) if std is None else np.asarray(std, np.float64)


def to_input(
    X: np.ndarray, pre: Mapping[str, Any] | None, dtype: Any = np.float32, fn: str = "to_input"
) -> np.ndarray:
    """Raw images (N, C, H, W), 0-255, as the model's input (the identity for ``pre`` None)."""
    X = np.asarray(X)
    if pre is None:
        return X.astype(dtype, copy=False)
    _check(fn, pre, X)
    return apply_preprocess(X, pre).astype(dtype, copy=False)


def to_pixels(X: np.ndarray, pre: Mapping[str, Any] | None) -> np.ndarray:
    """The model's inputs back as raw pixels (float64): ``x * std + mean + mean_image``."""
    if pre is None:
        return np.asarray(X, np.float64)
    out = np.asarray(X, np.float64) * _std(pre)[:, None, None]
    if pre.get("mean") is not None:
        out += np.asarray(pre["mean"], np.float64)[:, None, None]
    return out + np.asarray(pre["mean_image"], np.float64)


def pixel_gradient(dX: np.ndarray, pre: Mapping[str, Any] | None) -> np.ndarray:
    """A gradient with respect to the model's input as one with respect to the raw pixels
    (the chain rule through the preprocessing: divided by each channel's std)."""
    if pre is None:
        return dX
    return dX / _std(pre)[:, None, None].astype(dX.dtype)


def pixel_bounds(pre: Mapping[str, Any] | None, dtype: Any) -> tuple[Any, Any]:
    """The model's inputs for raw pixel values 0 and 255 (per position), or infinities."""
    if pre is None:
        return -np.inf, np.inf
    shape = (1, *np.shape(pre["mean_image"]))
    zero, full = np.zeros(shape, np.float32), np.full(shape, 255, np.float32)
    return apply_preprocess(zero, pre).astype(dtype), apply_preprocess(full, pre).astype(dtype)


def class_index(fn: str, target: Any, names: Sequence[str] | None, num_classes: int) -> int:
    """``target`` (an index, or a class name when ``names`` are given) as an index."""
    if isinstance(target, str) and names is not None and target in names:
        return list(names).index(target)
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if 0 <= target < num_classes:
            return int(target)
        raise ValueError(f"{fn}: target class {target} is out of range; expected 0 to "
                         f"{num_classes - 1}")  # fmt: skip
    known = f" or one of {list(names)}" if names is not None else ""
    raise ValueError(
        f"{fn}: unknown target class {target!r}; expected 0 to {num_classes - 1}{known}"
    )


def gaussian_blur(X: np.ndarray, sigma: float) -> np.ndarray:
    """Each channel of ``X`` (N, C, H, W) blurred by a Gaussian of std ``sigma`` pixels
    (separable, a kernel of ``2 * ceil(3 sigma) + 1`` taps, edges reflected)."""
    if sigma <= 0:
        return np.array(X, copy=True)
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(X, np.float64)
    for axis in (2, 3):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect" if out.shape[axis] > r else "edge")
        n = out.shape[axis]
        out = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(2 * r + 1))
    return out.astype(np.result_type(X, np.float32), copy=False)
