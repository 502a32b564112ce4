"""Fully connected layers, activations, normalisation, dropout and losses.

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from .backend import get_array_module
from .checks import (
    check_dout,
    check_dropout_p,
    check_float,
    check_labels,
    check_mode,
    check_ndim,
    check_nonempty,
    check_probability,
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


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Rectified linear unit ``max(x, 0)``, elementwise; any shape."""
    check_float("relu_forward", "x", x)
    out = get_array_module(x).maximum(x, 0)
    # out > 0 exactly where x > 0, so the output serves as the mask.
    return out, out


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of :func:`relu_forward`; dx has the shape of dout."""
    out = cache
    return dout * (out > 0)


# --- batch normalisation -------------------------------------------------------------
# One implementation normalises over any set of axes: axis 0 for the fully connected
# layer, axes (0, 2, 3) for the spatial version, which thereby avoids transposing
# (N, C, H, W) into (N*H*W, C) and back.


def _bn_forward(fn: str, x, gamma, beta, bn_param: MutableMapping, axes: tuple[int, ...]):
    check_float(fn, "x", x)
    mode = check_mode(fn, "bn_param", bn_param)
    xp = get_array_module(x)
    C = x.shape[1]
    check_vector(fn, "gamma", gamma, C)
    check_vector(fn, "beta", beta, C)
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    bshape = [1] * x.ndim
    bshape[1] = C
    g = gamma.reshape(bshape)

    if mode == "train":
        # Two full-size buffers in all: xhat (kept for backward) and out, which holds the
        # squared deviations for the variance before it receives the result.
        mean = x.mean(axis=axes, keepdims=True)
        xhat = x - mean
        out = xp.multiply(xhat, xhat)
        var = out.mean(axis=axes, keepdims=True)
        inv_std = 1.0 / xp.sqrt(var + eps)
        xhat *= inv_std
        rm = bn_param.get("running_mean")
        rv = bn_param.get("running_var")
        if rm is None:
            rm = xp.zeros(C, dtype=x.dtype)
            rv = xp.zeros(C, dtype=x.dtype)
        bn_param["running_mean"] = momentum * rm + (1 - momentum) * mean.reshape(C)
        bn_param["running_var"] = momentum * rv + (1 - momentum) * var.reshape(C)
        xp.multiply(xhat, g, out=out)
        out += beta.reshape(bshape)
        return out, (xhat, g, inv_std, axes)

    rm = bn_param.get("running_mean")
    rv = bn_param.get("running_var")
    if rm is None or rv is None:
        raise ValueError(
            f"{fn}: bn_param has mode 'test' but no running_mean/running_var; expected at "
            "least one forward pass in mode 'train' first"
        )
    scale = g / xp.sqrt(rv.reshape(bshape) + eps)
    out = (x - rm.reshape(bshape)) * scale
    out += beta.reshape(bshape)
    return out.astype(x.dtype, copy=False), None


def _bn_backward(fn: str, dout, cache):
    if cache is None:
        raise ValueError(f"{fn}: expected a cache from a 'train' mode forward, got a test-mode one")
    xhat, g, inv_std, axes = cache
    m = dout.size // dout.shape[1]
    xp = get_array_module(dout)
    dbeta = dout.sum(axis=axes)
    # dx serves first as the scratch for dout * xhat: one full-size buffer in all.
    dx = xp.multiply(dout, xhat)
    dgamma = dx.sum(axis=axes)
    bshape = g.shape
    # dx = gamma * inv_std * (dout - (xhat * dgamma + dbeta) / m)
    xp.multiply(xhat, (dgamma / m).reshape(bshape), out=dx)
    dx += (dbeta / m).reshape(bshape)
    xp.subtract(dout, dx, out=dx)
    dx *= g * inv_std
    return dx, dgamma, dbeta


def batchnorm_forward(x, gamma, beta, bn_param: MutableMapping[str, Any]):
    """Batch normalisation of x (N, D) with gamma, beta (D,) -> out (N, D).

    ``bn_param``: ``mode`` ('train' | 'test'), ``eps`` (1e-5), ``momentum`` (0.9), and the
    ``running_mean`` / ``running_var`` (D,) it creates on first use and updates in train
    mode as ``running = momentum * running + (1 - momentum) * batch_stat``. Test mode
    normalises with the running statistics.
    """
    fn = "batchnorm_forward"
    check_ndim(fn, "x", x, 2, "(N, D)")
    return _bn_forward(fn, x, gamma, beta, bn_param, (0,))


def batchnorm_backward(dout, cache):
    """Gradients of :func:`batchnorm_forward`: dx (N, D), dgamma (D,), dbeta (D,)."""
    return _bn_backward("batchnorm_backward", dout, cache)


def batchnorm_backward_alt(dout, cache):
    """Alias of :func:`batchnorm_backward`, which already uses the simplified formula."""
    return batchnorm_backward(dout, cache)


def dropout_forward(x, dropout_param: MutableMapping[str, Any]):
    """Inverted dropout: keep each unit with probability ``p``, scaled by ``1/p``.

    ``dropout_param``: ``mode`` ('train' | 'test'), ``p`` in (0, 1] (the probability of
    KEEPING a unit), optional ``seed`` (the same seed gives the same mask) or ``rng`` (a
    ``numpy.random.Generator`` to draw from). NumPy's global random state is never used.
    Any shape; test mode is the identity.
    """
    fn = "dropout_forward"
    check_float(fn, "x", x)
    mode = check_mode(fn, "dropout_param", dropout_param)
    p = check_dropout_p(fn, dropout_param.get("p"))
    if mode == "test":
        return x, None
    rng = dropout_param.get("rng")
    if rng is None:
        rng = np.random.default_rng(dropout_param.get("seed"))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{fn}: expected dropout_param['rng'] to be a numpy.random.Generator, "
            f"got {type(rng).__name__}"
        )
    xp = get_array_module(x)
    draw = xp.asarray(rng.random(x.shape, dtype=np.float32))
    mask = (draw < p).astype(x.dtype)
    mask *= 1.0 / p
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of :func:`dropout_forward`; dx has the shape of dout."""
    mask = cache
    if mask is None:
        return dout
    # A broadcastable dout of the wrong shape would otherwise pass silently.
    check_dout("dropout_backward", dout, mask.shape)
    return dout * mask


def softmax_loss(x, y, label_smoothing: float = 0.0):
    """Mean cross-entropy of softmax(x) against labels.

    Shapes: x (N, C) scores, y (N,) integer labels in [0, C) -> (loss, dx (N, C)).
    Scores are shifted by their row maximum, so logits of +-1000 stay finite.

    ``label_smoothing`` (eps in [0, 1]) replaces each one-hot target by
    ``(1 - eps) * onehot(y) + eps / C``, as PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``
    does: ``loss = -mean_n[(1 - eps) * log p_y + eps / C * sum_k log p_k]`` and
    ``dx = (softmax(x) - target) / N``. With eps = 0 it is the plain cross-entropy.
    """
    fn = "softmax_loss"
    check_ndim(fn, "x", x, 2, "(N, C)")
    check_float(fn, "x", x)
    N, C = x.shape
    check_nonempty(fn, x)
    check_labels(fn, y, N, C)
    eps = check_probability(fn, "label_smoothing", label_smoothing)
    xp = get_array_module(x)
    shifted = x - x.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_z
    rows = xp.arange(N)
    loss = -log_probs[rows, y].sum() / N
    dx = xp.exp(log_probs)
    if eps:
        loss = (1 - eps) * loss - eps / C * log_probs.sum() / N
        dx -= eps / C
        dx[rows, y] -= 1 - eps
    else:
        dx[rows, y] -= 1
    dx /= N
    return float(loss), dx


def svm_loss(x, y):
    """Mean multiclass hinge loss (margin 1).

    Shapes: x (N, C) scores, y (N,) integer labels in [0, C) -> (loss, dx (N, C)).
    """
    fn = "svm_loss"
    check_ndim(fn, "x", x, 2, "(N, C)")
    check_float(fn, "x", x)
    N, C = x.shape
    check_nonempty(fn, x)
    check_labels(fn, y, N, C)
    xp = get_array_module(x)
    rows = xp.arange(N)
    correct = x[rows, y][:, None]
    margins = xp.maximum(0, x - correct + 1)
    margins[rows, y] = 0
    loss = margins.sum() / N
    dx = (margins > 0).astype(x.dtype)
    dx[rows, y] -= dx.sum(axis=1)
    dx /= N
    return float(loss), dx


# --- GELU and the residual add ----------------------------------------------------------

_GELU_K = float(np.sqrt(2.0 / np.pi))
_GELU_A = 0.044715


def gelu_forward(x):
    """Gaussian error linear unit, tanh approximation, elementwise; any shape.

    ``out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``: the formula of
    PyTorch's ``GELU(approximate='tanh')`` and ONNX's ``Gelu(approximate="tanh")``. The
    exact GELU needs erf, which NumPy lacks; the two differ by less than 1e-3.
    """
    check_float("gelu_forward", "x", x)
    xp = get_array_module(x)
    t = xp.multiply(x, x)
    t *= _GELU_A
    t += 1
    t *= x
    t *= _GELU_K
    xp.tanh(t, out=t)
    out = t + 1
    out *= x
    out *= 0.5
    return out, (x, t)


def gelu_backward(dout, cache):
    """Gradient of :func:`gelu_forward`; dx has the shape of dout.

    With ``t = tanh(u)``, ``u = k * (x + a * x**3)``:
    ``d out / dx = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * a * x**2)``.
    """
    x, t = cache
    check_dout("gelu_backward", dout, x.shape)
    xp = get_array_module(x)
    du = xp.multiply(x, x)
    du *= 3 * _GELU_A * _GELU_K
    du += _GELU_K
    s = xp.multiply(t, t)
    xp.subtract(1, s, out=s)
    s *= du
    s *= x
    s += t
    s += 1
    s *= 0.5
    s *= dout
    return s


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
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "dropout_forward",
    "dropout_backward",
    "softmax_loss",
    "svm_loss",
    "gelu_forward",
    "gelu_backward",
    "add_forward",
    "add_backward",
]
