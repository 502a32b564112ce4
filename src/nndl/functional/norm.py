"""Normalisation layers in their reference form: batch norm (fully connected) and
spatial batch norm (per channel of (N, C, H, W)).

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ..backend import get_array_module
from ..validation import (
    check_float,
    check_mode,
    check_ndim,
    check_vector,
)

Cache = Any


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


# --- GELU and the residual add ----------------------------------------------------------


def spatial_batchnorm_forward(x, gamma, beta, bn_param: MutableMapping[str, Any]):
    """Batch norm of x (N, C, H, W) per channel over N, H and W; gamma, beta (C,).

    ``bn_param`` is as for :func:`nndl.layers.batchnorm_forward`; the running statistics
    have shape (C,). Returns out (N, C, H, W).
    """
    fn = "spatial_batchnorm_forward"
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    return _bn_forward(fn, x, gamma, beta, bn_param, (0, 2, 3))


def spatial_batchnorm_backward(dout, cache):
    """Gradients of :func:`spatial_batchnorm_forward`: dx (N, C, H, W), dgamma, dbeta (C,)."""
    return _bn_backward("spatial_batchnorm_backward", dout, cache)


__all__ = [
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
]
