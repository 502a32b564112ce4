"""Inverted dropout.

Every ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` (directly beneath
it) takes ``(dout, cache)`` and returns the gradients in the order of the forward's array
inputs. Arrays keep their dtype: float32 for training, float64 for gradient checks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import (
    check_dout,
    check_dropout_p,
    check_float,
    check_mode,
)


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


__all__ = [
    "dropout_backward",
    "dropout_forward",
]
