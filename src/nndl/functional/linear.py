"""Linear layers: the affine (fully connected) layer and the residual add.

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validation import (
    check_dout,
    check_float,
    check_ndim,
    check_same_shape,
    check_vector,
)

Cache = Any


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Affine layer ``out = x.reshape(N, D) @ w + b``.

    Shapes: x (N, d_1, ..., d_k) with D = d_1 * ... * d_k, w (D, M), b (M,) -> out (N, M).
    """
    fn = "affine_forward"
    check_float(fn, "x", x)
    check_ndim(fn, "w", w, 2, "(D, M)")
    if x.ndim < 1:
        raise ValueError(f"{fn}: expected x of shape (N, d_1, ..., d_k), got a scalar")
    D = int(np.prod(x.shape[1:], dtype=np.int64))
    if w.shape[0] != D:
        raise ValueError(
            f"{fn}: x of shape {x.shape} flattens to {D} features per row but w has shape "
            f"{w.shape}; expected w of shape ({D}, M)"
        )
    check_vector(fn, "b", b, w.shape[1])
    out = x.reshape(x.shape[0], D) @ w
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """Gradients of :func:`affine_forward`: dout (N, M) -> dx (like x), dw (D, M), db (M,)."""
    x, w = cache
    check_dout("affine_backward", dout, (x.shape[0], w.shape[1]))
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def add_forward(a, b):
    """Elementwise sum ``a + b`` of two arrays of the same shape (the residual add).

    No broadcasting: a shape mismatch is a ``ValueError``, since a residual branch that
    silently broadcast would train the wrong network.
    """
    fn = "add_forward"
    check_float(fn, "a", a)
    check_float(fn, "b", b)
    check_same_shape(fn, "a", a, "b", b)
    return a + b, a.shape


def add_backward(dout, cache):
    """Gradients of :func:`add_forward`: ``(da, db)``, both ``dout`` itself (not copies;
    backward functions never write into their ``dout``)."""
    check_dout("add_backward", dout, cache)
    return dout, dout


__all__ = [
    "add_backward",
    "add_forward",
    "affine_backward",
    "affine_forward",
]
