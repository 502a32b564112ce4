"""Normalisation layers in their reference form: batch norm (fully connected) and
spatial batch norm (per channel of (N, C, H, W)).

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ..backend import get_array_module
from ..validation import (
    check_count,
    check_dout,
    check_float,
    check_mode,
    check_ndim,
    check_real,
    check_vector,
)

Cache = Any


# --- batch normalisation -------------------------------------------------------------
# One implementation normalises over any set of axes: axis 0 for the fully connected
# layer, axes (0, 2, 3) for the spatial version, which thereby avoids transposing
# (N, C, H, W) into (N*H*W, C) and back.


def update_running(bn_param: MutableMapping[str, Any], mean, var, momentum: float) -> None:
    """The one running-statistics update of batch norm:
    ``running = momentum * running + (1 - momentum) * batch_stat`` for the batch's mean and
    variance (C,); the statistics start at zero when ``bn_param`` has none yet."""
    rm = bn_param.get("running_mean")
    rv = bn_param.get("running_var")
    if rm is None:
        rm = get_array_module(mean).zeros(mean.shape, dtype=mean.dtype)
        rv = get_array_module(mean).zeros(mean.shape, dtype=mean.dtype)
    bn_param["running_mean"] = momentum * rm + (1 - momentum) * mean
    bn_param["running_var"] = momentum * rv + (1 - momentum) * var


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
        update_running(bn_param, mean.reshape(C), var.reshape(C), momentum)
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


# --- layer and group normalisation ------------------------------------------------------
# Statistics per example (and group), so training and inference compute the same thing
# and there are no running statistics. The reference form goes one (example, group) at a
# time; nndl.kernels.norm does all of them at once and is tested equal to it.


def check_group_norm(fn: str, x, gamma, beta, G: Any, param: Any) -> tuple[int, float]:
    """Check a layer/group norm's inputs: x (N, C, ...) float, gamma and beta (C,), G an
    int >= 1 dividing C, ``param`` a dict with an optional ``eps`` > 0 (default 1e-5).
    Returns ``(G, eps)``."""
    check_float(fn, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{fn}: expected x of shape (N, C, ...), got shape {x.shape}")
    C = x.shape[1]
    check_vector(fn, "gamma", gamma, C)
    check_vector(fn, "beta", beta, C)
    G = check_count(fn, "G", G, 1)
    if C % G:
        raise ValueError(f"{fn}: expected G to divide the {C} channels of x, got G={G}")
    if not isinstance(param, Mapping):
        raise TypeError(f"{fn}: expected the param dict (eps), got {type(param).__name__}")
    eps = check_real(fn, "eps", param.get("eps", 1e-5), 0, above=True)
    return G, eps


def _bshape(x) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _group_norm_naive(fn: str, x, gamma, beta, G, param):
    G, eps = check_group_norm(fn, x, gamma, beta, G, param)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    per = C // G
    xhat = xp.empty_like(x)
    inv_std = xp.empty((N, G), dtype=x.dtype)
    for n in range(N):
        for g in range(G):
            part = x[n, g * per : (g + 1) * per]
            centred = part - part.mean()
            inv_std[n, g] = 1.0 / xp.sqrt((centred * centred).mean() + eps)
            xhat[n, g * per : (g + 1) * per] = centred * inv_std[n, g]
    out = xhat * gamma.reshape(_bshape(x)) + beta.reshape(_bshape(x))
    return out.astype(x.dtype, copy=False), (xhat, gamma, inv_std, G)


def _group_norm_backward_naive(fn: str, dout, cache):
    xhat, gamma, inv_std, G = cache
    check_dout(fn, dout, xhat.shape)
    xp = get_array_module(dout)
    axes = (0, *range(2, dout.ndim))
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * gamma.reshape(_bshape(dout))
    dx = xp.empty_like(dxhat)
    N, C = dout.shape[:2]
    per = C // G
    for n in range(N):
        for g in range(G):
            sl = slice(g * per, (g + 1) * per)
            d, xh = dxhat[n, sl], xhat[n, sl]
            # d xhat / d x of a normalisation over the group's m values, applied to d.
            dx[n, sl] = inv_std[n, g] * (d - d.mean() - xh * (d * xh).mean())
    return dx, dgamma, dbeta


def groupnorm_forward(x, gamma, beta, G: int, gn_param: Mapping[str, Any]):
    """Group normalisation of x (N, C, ...) (reference form): each example's channels in
    ``G`` groups of C/G, each group normalised over its channels and positions, then
    scaled and shifted per channel by gamma, beta (C,). ``gn_param``: ``eps`` (1e-5).
    The same in training and at inference (no running statistics)."""
    return _group_norm_naive("groupnorm_forward", x, gamma, beta, G, gn_param)


def groupnorm_backward(dout, cache):
    """Gradients of :func:`groupnorm_forward`: dx (like x), dgamma (C,), dbeta (C,)."""
    return _group_norm_backward_naive("groupnorm_backward", dout, cache)


def layernorm_forward(x, gamma, beta, ln_param: Mapping[str, Any]):
    """Layer normalisation of x (N, D) or (N, C, H, W) (reference form): each example
    normalised over all its values, then scaled and shifted per feature (channel) by
    gamma, beta of x.shape[1]: group normalisation with one group. ``ln_param``: ``eps``
    (1e-5). The classic assignment's layer norm for (N, D)."""
    return _group_norm_naive("layernorm_forward", x, gamma, beta, 1, ln_param)


def layernorm_backward(dout, cache):
    """Gradients of :func:`layernorm_forward`: dx (like x), dgamma, dbeta (x.shape[1],)."""
    return _group_norm_backward_naive("layernorm_backward", dout, cache)


__all__ = [
    "update_running",
    "check_group_norm",
    "groupnorm_backward",
    "groupnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
]
