"""First-order update rules.

Each rule is ``update(w, dw, config=None) -> (next_w, config)``. ``config`` holds the
``learning_rate``, the rule's hyperparameters (defaults filled in on first use) and its
state (moment buffers, Adam's step counter ``t``); pass the returned config to the next
call. With ``config['inplace'] = True`` the rule overwrites ``w`` instead of allocating
``next_w`` (the Solver does this; it owns the parameters). State buffers are updated in
place either way, so a step over a large weight matrix makes few temporaries.

Every rule also takes an optional decoupled ``weight_decay`` (Loshchilov & Hutter, as in
PyTorch's AdamW): ``w <- w * (1 - learning_rate * weight_decay)`` besides the rule's own
step, never mixed into the gradient or the moment buffers. It is off unless set (the
five classic rules leave it out of their config); ``sgdw`` and ``adamw`` default it on.
With ``config['coupled_decay'] = True`` the same ``weight_decay`` is L2 regularisation
instead: ``weight_decay * w`` is added to the gradient, so it passes through the momentum
or moment buffers (PyTorch's ``SGD``/``Adam`` ``weight_decay``, and airbench94's).

:func:`resolve_param_groups` maps parameter names to per-parameter settings (learning
rate multiplier, weight decay, frozen) from a list of glob-pattern groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backend import get_array_module
from ..validation import check_bool
from .config import Config, decay_of, is_coupled, prepare_config, state_buffer
from .orthogonal import MUON_DEFAULTS, muon

__all__ = [
    "sgd",
    "sgd_momentum",
    "nesterov_momentum",
    "rmsprop",
    "adam",
    "sgdw",
    "adamw",
    "UPDATE_RULES",
    "RULE_DEFAULTS",
    "get_update_rule",
    "RULE_STATE",
    "state_shapes",
]

UpdateRule = Callable[[np.ndarray, np.ndarray, "Config | None"], tuple[np.ndarray, Config]]


# Each rule's hyperparameters and their defaults, filled into a config on first use.
RULE_DEFAULTS: dict[str, Config] = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "nesterov_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0},
    "sgdw": {"learning_rate": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "adamw": {
        "learning_rate": 1e-3,
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 1e-2,
        "t": 0,
    },
    "muon": MUON_DEFAULTS,
}


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


def _keep(fn: str, config: Config) -> float | None:
    """The decoupled weight decay's factor ``1 - learning_rate * weight_decay``, or None
    when there is no decoupled decay (the classic rules then run exactly their old
    arithmetic)."""
    wd = decay_of(fn, config)
    if wd == 0 or is_coupled(fn, config):
        return None
    return 1.0 - config["learning_rate"] * wd


def _gradient(fn: str, w, dw, config: Config):
    """The gradient the rule steps with: ``dw``, plus ``weight_decay * w`` (a new array;
    the caller's gradient is not changed) when the decay is coupled."""
    wd = decay_of(fn, config)
    if wd == 0 or not is_coupled(fn, config):
        return dw
    return dw + wd * w


def _start(wb, keep: float | None, ob):
    """Where a rule adds its step: ``wb`` itself, or ``ob = keep * wb`` when decaying."""
    if keep is None:
        return wb
    get_array_module(wb).multiply(wb, keep, out=ob)
    return ob


def _target(w, config: Config):
    """Where the rule writes ``next_w``: w itself when ``config['inplace']``, else new."""
    return w if config.get("inplace", False) else get_array_module(w).empty_like(w)


def _apply(fn: str, w, step, config: Config):
    """Return ``w + step`` (after the weight decay, if any), written into ``w`` when the
    config asks for in-place updates."""
    out = _target(w, config)
    get_array_module(w).add(_start(w, _keep(fn, config), out), step, out=out)
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
    config = prepare_config("sgd", w, dw, config, RULE_DEFAULTS["sgd"])
    dw = _gradient("sgd", w, dw, config)
    return _apply("sgd", w, -config["learning_rate"] * dw, config), config


def sgd_momentum(w, dw, config: Config | None = None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; w += v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity`` (like w).
    """
    config = prepare_config("sgd_momentum", w, dw, config, RULE_DEFAULTS["sgd_momentum"])
    dw = _gradient("sgd_momentum", w, dw, config)
    v = state_buffer(config, "velocity", w)
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    return _apply("sgd_momentum", w, v, config), config


def nesterov_momentum(w, dw, config: Config | None = None):
    """Nesterov momentum in the look-ahead-free form.

    ``v_new = momentum * v - learning_rate * dw``;
    ``w += -momentum * v + (1 + momentum) * v_new``.
    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity`` (like w).
    """
    config = prepare_config("nesterov_momentum", w, dw, config, RULE_DEFAULTS["nesterov_momentum"])
    dw = _gradient("nesterov_momentum", w, dw, config)
    mu = config["momentum"]
    v = state_buffer(config, "velocity", w)
    step = v * -mu
    v *= mu
    v -= config["learning_rate"] * dw
    step += (1 + mu) * v
    return _apply("nesterov_momentum", w, step, config), config


def rmsprop(w, dw, config: Config | None = None):
    """RMSProp: ``cache = d * cache + (1 - d) * dw**2; w -= lr * dw / (sqrt(cache) + eps)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8), state
    ``cache`` (like w).
    """
    config = prepare_config("rmsprop", w, dw, config, RULE_DEFAULTS["rmsprop"])
    dw = _gradient("rmsprop", w, dw, config)
    xp = get_array_module(w)
    keep = _keep("rmsprop", config)
    d = config["decay_rate"]
    lr, eps = config["learning_rate"], config["epsilon"]
    cache = state_buffer(config, "cache", w)
    out = _target(w, config)
    for s, (wb, gb, cb, ob) in _blocks(w, dw, cache, out):
        # cache += (1 - d) * (dw**2 - cache) is d * cache + (1 - d) * dw**2.
        xp.multiply(gb, gb, out=s)
        s -= cb
        s *= 1 - d
        cb += s
        _adaptive_step(xp, s, _start(wb, keep, ob), gb, cb, eps, lr, ob)
    return out, config


def _adam(fn: str, w, dw, config: Config | None):
    config = prepare_config(fn, w, dw, config, RULE_DEFAULTS[fn])
    dw = _gradient(fn, w, dw, config)
    xp = get_array_module(w)
    keep = _keep(fn, config)
    b1, b2 = config["beta1"], config["beta2"]
    config["t"] += 1
    t = config["t"]
    m = state_buffer(config, "m", w)
    v = state_buffer(config, "v", w)
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
        _adaptive_step(xp, s, _start(wb, keep, ob), mb, vb, eps_t, lr_t, ob)
    return out, config


def adam(w, dw, config: Config | None = None):
    """Adam with bias correction.

    ``t += 1; m = beta1*m + (1-beta1)*dw; v = beta2*v + (1-beta2)*dw**2;``
    ``w -= lr * (m / (1-beta1**t)) / (sqrt(v / (1-beta2**t)) + epsilon)``.
    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon``
    (1e-8), state ``m``, ``v`` (like w) and the step counter ``t`` (0 before the first).
    """
    return _adam("adam", w, dw, config)


def adamw(w, dw, config: Config | None = None):
    """Adam with decoupled weight decay (AdamW; Loshchilov & Hutter, PyTorch's form).

    ``w <- w * (1 - lr * weight_decay)``, then Adam's step exactly as in :func:`adam`
    (the decay never enters m or v). config: as Adam's, plus ``weight_decay`` (1e-2).
    """
    return _adam("adamw", w, dw, config)


def sgdw(w, dw, config: Config | None = None):
    """SGD with (Nesterov) momentum and decoupled weight decay, in PyTorch's form.

    ``buf = momentum * buf + dw``; the step direction is ``dw + momentum * buf`` with
    ``nesterov`` (default), else ``buf``; ``w <- w * (1 - lr * weight_decay) - lr * d``.
    The buffer sums raw gradients, so a learning rate that changes every iteration (a
    schedule) scales the whole step, as in PyTorch and airbench94.
    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), ``nesterov`` (True),
    ``weight_decay`` (5e-4), state ``momentum_buffer`` (like w). With ``coupled_decay``
    the decay is added to the gradient instead (``dw + weight_decay * w`` enters the
    buffer): exactly PyTorch's ``SGD(momentum, nesterov, weight_decay)``.
    """
    fn = "sgdw"
    config = prepare_config(fn, w, dw, config, RULE_DEFAULTS[fn])
    dw = _gradient(fn, w, dw, config)
    nesterov = check_bool(fn, "config['nesterov']", config["nesterov"])
    xp = get_array_module(w)
    keep = _keep(fn, config)
    lr, mu = config["learning_rate"], config["momentum"]
    buf = state_buffer(config, "momentum_buffer", w)
    out = _target(w, config)
    for s, (wb, gb, bb, ob) in _blocks(w, dw, buf, out):
        bb *= mu
        bb += gb
        if nesterov:
            xp.multiply(bb, mu, out=s)
            s += gb
            s *= -lr
        else:
            xp.multiply(bb, -lr, out=s)
        xp.add(_start(wb, keep, ob), s, out=ob)
    return out, config


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "nesterov_momentum": nesterov_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
    "sgdw": sgdw,
    "adamw": adamw,
    "muon": muon,
}


def _like_param(*keys: str) -> Callable[[tuple[int, ...]], dict[str, tuple[int, ...]]]:
    def shapes(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {key: tuple(shape) for key in keys}

    return shapes


RULE_STATE: dict[str, Callable[[tuple[int, ...]], dict[str, tuple[int, ...]]]] = {
    "sgd": _like_param(),
    "sgd_momentum": _like_param("velocity"),
    "nesterov_momentum": _like_param("velocity"),
    "rmsprop": _like_param("cache"),
    "adam": _like_param("m", "v"),
    "sgdw": _like_param("momentum_buffer"),
    "adamw": _like_param("m", "v"),
    "muon": _like_param("momentum_buffer"),
}
"""Each rule's state arrays: ``RULE_STATE[name](param_shape) -> {key: shape}``. The
checkpoint checks use it, so a rule whose state is not shaped like its parameter (a
factored second moment, an orthogonalisation buffer) declares it here."""


def state_shapes(rule: str | None, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The state arrays rule ``rule`` keeps for a parameter of ``shape`` (``{}`` for a
    rule that is not registered by name, whose arrays are then taken to be shaped like
    the parameter)."""
    declared = RULE_STATE.get(rule) if isinstance(rule, str) else None
    return {} if declared is None else declared(tuple(shape))


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
