"""Parameter initialisers and the patch-whitening initialiser of airbench94.

An initialiser is named in a :class:`~nndl.nn.module.ParamSpec` (``init``) and resolved by
:func:`resolve_init` into a normal draw with a standard deviation, a uniform draw with a
bound, a constant, or a value computed from training data; the model draws the random
values itself (from its Generator, in float64, then cast), so the random stream is the
model's, not this module's.

Data initialisers (``patch_whitening``) cannot be drawn when the model is built: their
parameters start as zeros, and the model computes them from training images before
training (:meth:`nndl.network.Network.init_from_data`, which the Solver calls).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ..validation import check_count, check_float, check_ndim
from .module import ParamSpec

# name -> (kind, value from (fan_in, fan_out)); kind 'normal' (value = std), 'uniform' and
# 'dirac_uniform' (value = bound), 'constant', or 'data' (computed from training images).
INITS: dict[str, tuple[str, Callable[[int, int], float]]] = {
    "he_normal": ("normal", lambda fan_in, fan_out: math.sqrt(2.0 / fan_in)),
    "lecun_normal": ("normal", lambda fan_in, fan_out: math.sqrt(1.0 / fan_in)),
    "glorot_normal": ("normal", lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out))),
    "uniform_fan_in": ("uniform", lambda fan_in, fan_out: math.sqrt(1.0 / fan_in)),
    "dirac_uniform": ("dirac_uniform", lambda fan_in, fan_out: math.sqrt(1.0 / fan_in)),
    "patch_whitening": ("data", lambda fan_in, fan_out: 0.0),
    "zeros": ("constant", lambda fan_in, fan_out: 0.0),
    "ones": ("constant", lambda fan_in, fan_out: 1.0),
}
"""He (``sqrt(2/fan_in)``, for layers followed by a ReLU), LeCun (``sqrt(1/fan_in)``),
Glorot (``sqrt(2/(fan_in + fan_out))``) normal draws; ``uniform_fan_in``, uniform on
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (PyTorch's default for conv and linear layers);
``dirac_uniform`` (conv only, airbench94's): ``uniform_fan_in`` with the first
``min(F, C)`` filters replaced by the identity (a 1 at the kernel centre of their own
input channel, PyTorch's ``dirac_``), so the layer starts by passing its input through;
``patch_whitening`` (conv only; ``F = 2 * C * k * k`` filters): :func:`patch_whitening_weights`
of the training images, computed by the model before training; and constants."""

CONV_ONLY_INITS = ("dirac_uniform", "patch_whitening")
# airbench94's patch whitening: the first 5000 training images, eps 5e-4.
PATCH_WHITENING_IMAGES = 5000
PATCH_WHITENING_EPS = 5e-4


def check_init(key: str, value: Any, conv: bool = True) -> str | float:
    """An ``init`` argument: a name from :data:`INITS` or a std > 0 (``conv=False``: not
    the conv-only names)."""
    names = sorted(n for n in INITS if conv or n not in CONV_ONLY_INITS)
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"{key}: expected one of {names} or a standard deviation > 0, got {value!r}")


def resolve_init(spec: ParamSpec) -> tuple[str, float]:
    """``(kind, value)`` for the parameter ``spec``: ``('normal', std)``, ``('uniform',
    bound)``, ``('dirac_uniform', bound)``, ``('constant', value)`` or ``('data', 0.0)``."""
    if isinstance(spec.init, float):
        return "normal", spec.init
    kind, rule = INITS[spec.init]
    return kind, rule(spec.fan_in, spec.fan_out)


Draw = Callable[[str, tuple[int, ...], float], np.ndarray]


def init_params(
    specs: dict[str, ParamSpec], draw_normal: Draw, dtype: Any, draw_uniform: Draw | None = None
) -> dict[str, np.ndarray]:
    """Initial values for ``specs`` (in their order): ``draw_normal(key, shape, std)`` for
    normal initialisers, ``draw_uniform(key, shape, bound)`` (values in ``[-bound,
    bound]``) for uniform ones, zeros for data initialisers (computed later), constants in
    ``dtype`` otherwise."""
    out = {}
    for key, spec in specs.items():
        kind, value = resolve_init(spec)
        if kind == "normal":
            out[key] = draw_normal(key, spec.shape, value)
        elif kind in ("uniform", "dirac_uniform"):
            if draw_uniform is None:
                raise ValueError(f"init_params: {key} needs draw_uniform (init {spec.init!r})")
            w = draw_uniform(key, spec.shape, value)
            out[key] = dirac(w) if kind == "dirac_uniform" else w
        else:
            out[key] = np.full(spec.shape, value, dtype=dtype)
    return out


def dirac(w: np.ndarray) -> np.ndarray:
    """``w`` (F, C, kh, kw) with its first ``min(F, C)`` filters set to the identity: filter
    ``i`` is 1 at the kernel centre ``(kh // 2, kw // 2)`` of channel ``i``, 0 elsewhere
    (PyTorch's ``dirac_``). Returns ``w``, changed in place."""
    check_ndim("dirac", "w", w, 4, "(F, C, kh, kw)")
    n = min(w.shape[0], w.shape[1])
    w[:n] = 0
    idx = np.arange(n)
    w[idx, idx, w.shape[2] // 2, w.shape[3] // 2] = 1
    return w


def _patches(x: np.ndarray, p: int) -> np.ndarray:
    """All p x p patches of x (n, C, H, W), stride 1, as rows ordered like conv weights
    (c, kh, kw): shape (n * H' * W', C * p * p)."""
    win = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(2, 3))  # n,C,H',W',p,p
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * p * p)


def patch_whitening_weights(
    X: np.ndarray, patch_size: int = 2, eps: float = 5e-4, chunk: int = 256
) -> np.ndarray:
    """Conv weights that whiten the ``patch_size`` x ``patch_size`` patches of ``X``.

    ``X`` (N, C, H, W), typically normalised training images (airbench94 uses 5000).
    With ``S`` the second-moment matrix of the flattened patches (their covariance for
    zero-mean data) and ``S = V diag(lam) V^T``, the filters are the eigenvectors
    ``V[:, i] / sqrt(lam_i + eps)`` (largest eigenvalue first), followed by their
    negatives: W (2 * C * p * p, C, p, p), float64. A conv with the first half of these
    filters (stride 1, no padding) maps the patches to outputs whose second moment is
    ``diag(lam / (lam + eps))``, the identity up to eps. Patches are accumulated
    ``chunk`` images at a time, so memory stays small for any N.
    """
    fn = "patch_whitening_weights"
    check_ndim(fn, "X", X, 4, "(N, C, H, W)")
    check_float(fn, "X", X)
    p = check_count(fn, "patch_size", patch_size, 1)
    if p > min(X.shape[2:]) or X.shape[0] == 0:
        raise ValueError(f"{fn}: expected at least one image of at least {p}x{p}, got {X.shape}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"{fn}: expected eps >= 0, got {eps!r}")
    step = check_count(fn, "chunk", chunk, 1)
    C = X.shape[1]
    d = C * p * p
    second = np.zeros((d, d))
    rows = 0
    for start in range(0, X.shape[0], step):
        P = _patches(np.asarray(X[start : start + step], dtype=np.float64), p)
        second += P.T @ P
        rows += P.shape[0]
    lam, V = np.linalg.eigh(second / rows)
    lam, V = lam[::-1], V[:, ::-1]  # largest first, as airbench94 orders them
    if np.any(lam + eps <= 0):
        raise ValueError(
            f"{fn}: the patch second-moment matrix is singular (smallest eigenvalue "
            f"{lam[-1]:.3g}); use eps > 0"
        )
    W = (V / np.sqrt(lam + eps)).T.reshape(d, C, p, p)
    return np.concatenate([W, -W])


__all__ = [
    "INITS",
    "CONV_ONLY_INITS",
    "PATCH_WHITENING_IMAGES",
    "PATCH_WHITENING_EPS",
    "check_init",
    "resolve_init",
    "init_params",
    "dirac",
    "patch_whitening_weights",
]
