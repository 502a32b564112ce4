"""What every update rule does with its ``config`` before stepping: the arguments checked,
defaults filled in, state buffers created on first use, the weight decay read."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import check_array, check_bool, check_same_shape

__all__ = ["Config", "decay_of", "is_coupled", "is_real", "prepare_config", "state_buffer"]

Config = dict[str, Any]


def prepare_config(fn: str, w, dw, config: Config | None, defaults: Config) -> Config:
    """``config`` (a new dict for None) with ``defaults`` filled in, after checking that
    ``w`` and ``dw`` are float arrays of one shape; errors name the rule ``fn``."""
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


def state_buffer(config: Config, key: str, w) -> np.ndarray:
    """The state array ``config[key]``, created as zeros like ``w`` on first use."""
    buf = config.get(key)
    if buf is None or buf.shape != w.shape:
        buf = get_array_module(w).zeros_like(w)
        config[key] = buf
    return buf


def is_real(value: Any) -> bool:
    """A real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def decay_of(fn: str, config: Config) -> float:
    """``config['weight_decay']`` (0 when unset), checked to be a number >= 0."""
    wd = config.get("weight_decay", 0.0)
    if not is_real(wd) or wd < 0:
        raise ValueError(f"{fn}: expected config['weight_decay'] to be a number >= 0, got {wd!r}")
    return wd


def is_coupled(fn: str, config: Config) -> bool:
    """Whether the weight decay is coupled (added to the gradient) rather than decoupled."""
    return check_bool(fn, "config['coupled_decay']", config.get("coupled_decay", False))
