"""First-order update rules.

Each rule is ``update(w, dw, config=None) -> (next_w, config)``. ``config`` holds the
``learning_rate``, the rule's hyperparameters (defaults filled in on first use) and its
state (moment buffers, Adam's step counter ``t``); pass the returned config to the next
call. With ``config['inplace'] = True`` the rule overwrites ``w`` instead of allocating
``next_w`` (the Solver does this; it owns the parameters). State buffers are updated in
place either way, so a step over a large weight matrix makes few temporaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import get_array_module
from .checks import check_array, check_same_shape

Config = dict[str, Any]
UpdateRule = Callable[[np.ndarray, np.ndarray, "Config | None"], tuple[np.ndarray, Config]]


def _prepare(fn: str, w, dw, config: Config | None, defaults: Config) -> Config:
    check_array(fn, "w", w)
    check_array(fn, "dw", dw)
    check_same_shape(fn, "w", w, "dw", dw)
    if config is None:
        config = {}
    elif not isinstance(config, dict):
        raise TypeError(f"{fn}: expected config to be a dict or None, got {type(config).__name__}")
    for key, value in defaults.items():
        config.setdefault(key, value)
    return config


def _state(config: Config, key: str, w) -> np.ndarray:
    buf = config.get(key)
    if buf is None or buf.shape != w.shape:
        buf = get_array_module(w).zeros_like(w)
        config[key] = buf
    return buf


# Elementwise rules over a large matrix are memory-bound: each NumPy call streams the
# whole array through memory. Walking flat blocks that fit in the L2 cache runs the rule's
# several passes on cached data, so memory sees each array about once per step.
_BLOCK = 1 << 15


def _blocks(*arrays):
    """Yield ``(scratch, blocks)``: matching flat blocks (views) of equally shaped arrays
    and a scratch view of the same shape, in the first array's dtype, reused throughout.

    Arrays that are not all C-contiguous (a flat view would be a copy) come as one block.
    """
    w = arrays[0]
    xp = get_array_module(w)
    if not all(a.flags.c_contiguous for a in arrays):
        yield xp.empty(w.shape, dtype=w.dtype), arrays
        return
    flats = [a.reshape(-1) for a in arrays]
    tmp = xp.empty(min(w.size, _BLOCK), dtype=w.dtype)
    for i in range(0, w.size, _BLOCK):
        block = [f[i : i + _BLOCK] for f in flats]
        yield tmp[: block[0].size], block


def _target(w, config: Config):
    """Where the rule writes ``next_w``: w itself when ``config['inplace']``, else new."""
    return w if config.get("inplace", False) else get_array_module(w).empty_like(w)


def _apply(w, step, config: Config):
    """Return ``w + step``, written into ``w`` when the config asks for in-place updates."""
    out = _target(w, config)
    get_array_module(w).add(w, step, out=out)
    return out


def _adaptive_step(xp, s, wb, num, sq, eps: float, lr: float, ob) -> None:
    """``ob = wb - lr * num / (sqrt(sq) + eps)`` through the scratch block ``s``."""
    xp.sqrt(sq, out=s)
    s += eps
    xp.divide(num, s, out=s)
    s *= -lr
    xp.add(wb, s, out=ob)


def sgd(w, dw, config: Config | None = None):
    """Vanilla stochastic gradient descent: ``w -= learning_rate * dw``.

    config: ``learning_rate`` (default 1e-2).
    """
    config = _prepare("sgd", w, dw, config, {"learning_rate": 1e-2})
    return _apply(w, -config["learning_rate"] * dw, config), config


def sgd_momentum(w, dw, config: Config | None = None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; w += v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity`` (like w).
    """
    config = _prepare("sgd_momentum", w, dw, config, {"learning_rate": 1e-2, "momentum": 0.9})
    v = _state(config, "velocity", w)
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    return _apply(w, v, config), config


def nesterov_momentum(w, dw, config: Config | None = None):
    """Nesterov momentum in the look-ahead-free form.

    ``v_new = momentum * v - learning_rate * dw``;
    ``w += -momentum * v + (1 + momentum) * v_new``.
    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity`` (like w).
    """
    config = _prepare("nesterov_momentum", w, dw, config, {"learning_rate": 1e-2, "momentum": 0.9})
    mu = config["momentum"]
    v = _state(config, "velocity", w)
    step = v * -mu
    v *= mu
    v -= config["learning_rate"] * dw
    step += (1 + mu) * v
    return _apply(w, step, config), config


def rmsprop(w, dw, config: Config | None = None):
    """RMSProp: ``cache = d * cache + (1 - d) * dw**2; w -= lr * dw / (sqrt(cache) + eps)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8), state
    ``cache`` (like w).
    """
    config = _prepare(
        "rmsprop", w, dw, config, {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}
    )
    xp = get_array_module(w)
    d = config["decay_rate"]
    lr, eps = config["learning_rate"], config["epsilon"]
    cache = _state(config, "cache", w)
    out = _target(w, config)
    for s, (wb, gb, cb, ob) in _blocks(w, dw, cache, out):
        # cache += (1 - d) * (dw**2 - cache) is d * cache + (1 - d) * dw**2.
        xp.multiply(gb, gb, out=s)
        s -= cb
        s *= 1 - d
        cb += s
        _adaptive_step(xp, s, wb, gb, cb, eps, lr, ob)
    return out, config


def adam(w, dw, config: Config | None = None):
    """Adam with bias correction.

    ``t += 1; m = beta1*m + (1-beta1)*dw; v = beta2*v + (1-beta2)*dw**2;``
    ``w -= lr * (m / (1-beta1**t)) / (sqrt(v / (1-beta2**t)) + epsilon)``.
    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon``
    (1e-8), state ``m``, ``v`` (like w) and the step counter ``t`` (0 before the first).
    """
    config = _prepare(
        "adam",
        w,
        dw,
        config,
        {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0},
    )
    xp = get_array_module(w)
    b1, b2 = config["beta1"], config["beta2"]
    config["t"] += 1
    t = config["t"]
    m = _state(config, "m", w)
    v = _state(config, "v", w)
    # Folding both bias corrections into a scalar step size and epsilon is the same
    # update exactly, and saves two full-size passes over m and v.
    c2 = (1 - b2**t) ** 0.5
    lr_t = config["learning_rate"] * c2 / (1 - b1**t)
    eps_t = config["epsilon"] * c2
    out = _target(w, config)
    for s, (wb, gb, mb, vb, ob) in _blocks(w, dw, m, v, out):
        # m += (1 - b1) * (g - m) is b1 * m + (1 - b1) * g with one temporary.
        xp.subtract(gb, mb, out=s)
        s *= 1 - b1
        mb += s
        xp.multiply(gb, gb, out=s)
        s -= vb
        s *= 1 - b2
        vb += s
        _adaptive_step(xp, s, wb, mb, vb, eps_t, lr_t, ob)
    return out, config


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "nesterov_momentum": nesterov_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}


def get_update_rule(rule: str | UpdateRule) -> UpdateRule:
    """Look up an update rule by name; a callable is returned as it is."""
    if callable(rule):
        return rule
    if rule not in UPDATE_RULES:
        raise ValueError(
            f"get_update_rule: unknown update rule {rule!r}; expected one of "
            f"{sorted(UPDATE_RULES)} or a callable"
        )
    return UPDATE_RULES[rule]
