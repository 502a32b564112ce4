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
    """Yield matching flat blocks (views) of equally shaped arrays.

    Arrays that are not all C-contiguous (a flat view would be a copy) come as one block.
    """
    if not all(a.flags.c_contiguous for a in arrays):
        yield arrays
        return
    flats = [a.reshape(-1) for a in arrays]
    for i in range(0, flats[0].size, _BLOCK):
        yield [f[i : i + _BLOCK] for f in flats]


def _scratch(*arrays):
    """A scratch buffer for one block of ``_blocks(*arrays)``, in the first array's dtype."""
    w = arrays[0]
    blocked = all(a.flags.c_contiguous for a in arrays)
    return get_array_module(w).empty(min(w.size, _BLOCK) if blocked else w.shape, dtype=w.dtype)


def _target(w, config: Config):
    """Where the rule writes ``next_w``: w itself when ``config['inplace']``, else new."""
    return w if config.get("inplace", False) else get_array_module(w).empty_like(w)


def _apply(w, step, config: Config):
    """Return ``w + step``, written into ``w`` when the config asks for in-place updates."""
    if config.get("inplace", False):
        w += step
        return w
    return w + step


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
    tmp = _scratch(w, dw, cache, out)
    for wb, gb, cb, ob in _blocks(w, dw, cache, out):
        s = tmp.reshape(-1)[: wb.size].reshape(wb.shape)
        # cache += (1 - d) * (dw**2 - cache) is d * cache + (1 - d) * dw**2.
        xp.multiply(gb, gb, out=s)
        s -= cb
        s *= 1 - d
        cb += s
        xp.sqrt(cb, out=s)
        s += eps
        xp.divide(gb, s, out=s)
        s *= -lr
        xp.add(wb, s, out=ob)
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
    tmp = _scratch(w, dw, m, v, out)
    for wb, gb, mb, vb, ob in _blocks(w, dw, m, v, out):
        s = tmp.reshape(-1)[: wb.size].reshape(wb.shape)
        # m += (1 - b1) * (g - m) is b1 * m + (1 - b1) * g with one temporary.
        xp.subtract(gb, mb, out=s)
        s *= 1 - b1
        mb += s
        xp.multiply(gb, gb, out=s)
        s -= vb
        s *= 1 - b2
        vb += s
        xp.sqrt(vb, out=s)
        s += eps_t
        xp.divide(mb, s, out=s)
        s *= -lr_t
        xp.add(wb, s, out=ob)
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
