"""Orthogonalised updates: Muon, its momentum orthogonalised by a Newton-Schulz iteration.

Muon (K. Jordan et al., 2024) steps a weight matrix along the orthogonal factor of its
(Nesterov) momentum: if the momentum is ``G = U S V^T``, the step is approximately
``U V^T``, so every direction the gradient points in moves the weight by the same
amount, however large or small its singular value. A conv filter bank ``(F, C, k, k)``
is the matrix ``(F, C*k*k)``, a vector ``(n,)`` the row ``(1, n)`` (its orthogonal factor
is the unit vector: normalised gradient descent). The usual split: Muon for the conv
filters, a first-order rule (``sgdw``, ``adamw``) for biases, batch-norm shifts and the
classifier head, each in its parameter group (``param_groups=[{"params": ...,
"update_rule": "muon", ...}]``).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module
from ..validation import check_bool, check_count
from .config import Config, decay_of, is_coupled, prepare_config, state_buffer

__all__ = ["MUON_DEFAULTS", "NS_COEFFICIENTS", "muon", "newton_schulz"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""The quintic's coefficients ``(a, b, c)`` in :func:`newton_schulz`, those of the public
Muon reference: chosen so that five (or, in airbench94_muon, three) steps push every
singular value in (0, 1] close to 1, landing in about [0.7, 1.2] rather than exactly on
1, which is all the step needs."""

MUON_DEFAULTS: Config = {
    "learning_rate": 0.02,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "renormalize": False,
    "weight_decay": 0.0,
}
""":func:`muon`'s hyperparameters and their defaults (``RULE_DEFAULTS["muon"]``)."""


def newton_schulz(G: np.ndarray, steps: int = 5, eps: float = 1e-7) -> np.ndarray:
    """Approximately the orthogonal factor ``U V^T`` of ``G = U S V^T``; shape ``(m, n)``.

    ``X_0 = G / (||G||_F + eps)`` (every singular value then at most 1), then ``steps``
    times ``A = X X^T``, ``X <- a X + (b A + c A^2) X``: the odd polynomial
    ``p(s) = a s + b s^3 + c s^5`` applied to every singular value at once, the singular
    vectors unchanged. It runs on the wide orientation (``m <= n``, transposing a tall
    ``G``), so ``A`` is the smaller Gram matrix; its cost is about ``steps * 3 m^2 n``
    multiply-adds, all in GEMMs.
    """
    if G.ndim != 2:
        raise ValueError(f"newton_schulz: expected a matrix (m, n), got shape {G.shape}")
    xp = get_array_module(G)
    a, b, c = NS_COEFFICIENTS
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / (xp.linalg.norm(X) + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if tall else X


def muon(w, dw, config: Config | None = None):
    """Muon for a weight ``w`` (``(F, ...)``, stepped as the matrix ``(F, prod(rest))``).

    ``buf = momentum * buf + dw``; the direction is ``d = dw + momentum * buf`` with
    ``nesterov`` (default), else ``buf``; with ``renormalize`` the weight is first scaled
    to Frobenius norm ``sqrt(F)`` (for filters followed by batch norm, whose output does
    not depend on their scale: the step's size relative to the weight then stays fixed, as
    in airbench94_muon); then ``w <- w * (1 - lr * weight_decay) - lr *
    newton_schulz(d, ns_steps)``. The step does not depend on the gradient's scale (a
    summed or a mean loss give the same run).

    config: ``learning_rate`` (0.02), ``momentum`` (0.95), ``nesterov`` (True),
    ``ns_steps`` (5), ``renormalize`` (False), ``weight_decay`` (off; decoupled, or added
    to the gradient with ``coupled_decay``); state ``momentum_buffer`` (like w).
    """
    fn = "muon"
    config = prepare_config(fn, w, dw, config, MUON_DEFAULTS)
    nesterov = check_bool(fn, "config['nesterov']", config["nesterov"])
    renormalize = check_bool(fn, "config['renormalize']", config["renormalize"])
    steps = check_count(fn, "config['ns_steps']", config["ns_steps"], 1)
    xp = get_array_module(w)
    lr, mu = config["learning_rate"], config["momentum"]
    wd, coupled = decay_of(fn, config), is_coupled(fn, config)
    if coupled and wd:  # L2 through the gradient and the momentum, as the other rules do
        dw = dw + wd * w
    buf = state_buffer(config, "momentum_buffer", w)
    buf *= mu
    buf += dw
    d = dw + mu * buf if nesterov else buf
    rows = w.shape[0] if w.ndim > 1 else 1
    scale = 1.0 if coupled else 1.0 - lr * wd
    if renormalize:
        scale *= math.sqrt(rows) / max(float(xp.linalg.norm(w)), 1e-12)
    step = newton_schulz(d.reshape(rows, -1), steps).reshape(w.shape)
    out = w if config.get("inplace", False) else xp.empty_like(w)
    xp.multiply(w, w.dtype.type(scale), out=out)
    out -= (lr * step).astype(w.dtype, copy=False)
    return out, config
