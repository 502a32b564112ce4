"""The one place where layer inputs are validated and output sizes are computed.

Every error names the calling function, what it expected and what it was given, so a
user sees ``conv_forward_naive: expected x with 4 dimensions (N, C, H, W), got shape
(3, 32, 32)`` instead of an ``IndexError`` from deep inside a loop.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(getattr(a, "shape", ()))


def check_array(fn: str, name: str, a: Any) -> None:
    """Raise ``TypeError`` unless ``a`` is an array (has ``shape`` and ``dtype``)."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        raise TypeError(f"{fn}: expected {name} to be an array, got {type(a).__name__}")


def check_float(fn: str, name: str, a: Any) -> None:
    """Raise ``TypeError`` unless ``a`` is a floating point array."""
    check_array(fn, name, a)
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: expected {name} to be a floating point array, got dtype {a.dtype}")


def check_ndim(fn: str, name: str, a: Any, ndim: int, layout: str = "") -> None:
    """Raise ``ValueError`` unless ``a`` has exactly ``ndim`` dimensions."""
    check_array(fn, name, a)
    if a.ndim != ndim:
        what = f" {layout}" if layout else ""
        raise ValueError(
            f"{fn}: expected {name} with {ndim} dimensions{what}, got shape {_shape(a)}"
        )


def check_same_shape(fn: str, name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if _shape(a) != _shape(b):
        raise ValueError(
            f"{fn}: expected {name_b} to have the shape of {name_a} {_shape(a)}, got {_shape(b)}"
        )


def check_dout(fn: str, dout: Any, expected: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless the upstream gradient has the forward output's shape.

    A backward pass would otherwise broadcast or loop over the wrong extent and return
    gradients of the right shape but the wrong values.
    """
    check_array(fn, "dout", dout)
    if _shape(dout) != tuple(expected):
        raise ValueError(
            f"{fn}: expected dout of shape {tuple(expected)} (the forward output), "
            f"got {_shape(dout)}"
        )


def check_vector(fn: str, name: str, a: Any, length: int) -> None:
    """Raise ``ValueError`` unless ``a`` is a vector of ``length`` entries."""
    check_array(fn, name, a)
    if _shape(a) != (length,):
        raise ValueError(f"{fn}: expected {name} of shape ({length},), got {_shape(a)}")


def _get_int(fn: str, params: Mapping[str, Any], pname: str, key: str, minimum: int) -> int:
    if not isinstance(params, Mapping):
        raise TypeError(f"{fn}: expected {pname} to be a dict, got {type(params).__name__}")
    if key not in params:
        raise ValueError(
            f"{fn}: {pname} is missing the key '{key}' (expected keys: "
            f"{sorted(_PARAM_KEYS[pname])}, got {sorted(params)})"
        )
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: expected {pname}['{key}'] to be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{fn}: expected {pname}['{key}'] >= {minimum}, got {value}")
    return int(value)


_PARAM_KEYS = {
    "conv_param": ("stride", "pad"),
    "pool_param": ("pool_height", "pool_width", "stride"),
}


def output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int | None:
    """Return ``1 + (size + 2*pad - kernel) / stride`` or ``None`` if it is not whole.

    The single formula for every conv and pool layer; ``None`` also when the kernel
    is larger than the padded input.
    """
    span = size + 2 * pad - kernel
    if span < 0 or span % stride:
        return None
    return 1 + span // stride


def conv_shapes(fn: str, x: Any, w: Any, b: Any, conv_param: Mapping[str, Any]):
    """Validate a convolution's inputs; return ``(stride, pad, H_out, W_out)``."""
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    check_ndim(fn, "w", w, 4, "(F, C, HH, WW)")
    check_float(fn, "x", x)
    check_float(fn, "w", w)
    F, C, HH, WW = w.shape
    if x.shape[1] != C:
        raise ValueError(
            f"{fn}: channel mismatch, x has {x.shape[1]} channels (shape {_shape(x)}) but "
            f"w expects {C} (shape {_shape(w)})"
        )
    check_vector(fn, "b", b, F)
    stride = _get_int(fn, conv_param, "conv_param", "stride", 1)
    pad = _get_int(fn, conv_param, "conv_param", "pad", 0)
    H, W = x.shape[2:]
    H_out = output_size(H, HH, stride, pad)
    W_out = output_size(W, WW, stride, pad)
    if H_out is None or W_out is None:
        raise ValueError(
            f"{fn}: output size is not a whole number: x {_shape(x)}, w {_shape(w)}, "
            f"stride {stride}, pad {pad} give (H + 2*pad - HH) / stride = "
            f"({H} + {2 * pad} - {HH}) / {stride} and (W + 2*pad - WW) / stride = "
            f"({W} + {2 * pad} - {WW}) / {stride}; expected whole non-negative numbers"
        )
    return stride, pad, H_out, W_out


def pool_floor(fn: str, pool_param: Mapping[str, Any]) -> bool:
    """``pool_param['floor']`` (default False), validated."""
    return check_bool(fn, "pool_param['floor']", pool_param.get("floor", False))


def pool_output_hw(H: int, W: int, PH: int, PW: int, stride: int, floor: bool):
    """The pool's output size ``(H', W')``, or ``(None, None)`` when the windows do not
    tile the input and ``floor`` is False. With ``floor`` (PyTorch's default mode) the
    rows and columns past the last whole window are left out: ``H' = 1 + (H - PH) // stride``.
    """
    if floor and PH <= H and PW <= W:
        return 1 + (H - PH) // stride, 1 + (W - PW) // stride
    return output_size(H, PH, stride), output_size(W, PW, stride)


def pool_shapes(fn: str, x: Any, pool_param: Mapping[str, Any]):
    """Validate a pool's inputs; return ``(PH, PW, stride, H_out, W_out)``.

    ``pool_param['floor']`` (optional, default False): True accepts windows that do not
    tile the input and leaves out the rows and columns past the last whole window (their
    gradient is zero), as PyTorch's pools do by default.
    """
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    check_float(fn, "x", x)
    PH = _get_int(fn, pool_param, "pool_param", "pool_height", 1)
    PW = _get_int(fn, pool_param, "pool_param", "pool_width", 1)
    stride = _get_int(fn, pool_param, "pool_param", "stride", 1)
    floor = pool_floor(fn, pool_param)
    H, W = x.shape[2:]
    if PH > H or PW > W:
        raise ValueError(
            f"{fn}: pool window {PH}x{PW} is larger than the input {H}x{W} (x shape {_shape(x)})"
        )
    H_out, W_out = pool_output_hw(H, W, PH, PW, stride, floor)
    if H_out is None or W_out is None:
        raise ValueError(
            f"{fn}: output size is not a whole number: x {_shape(x)}, pool {PH}x{PW}, "
            f"stride {stride} give (H - PH) / stride = ({H} - {PH}) / {stride} and "
            f"(W - PW) / stride = ({W} - {PW}) / {stride}; pool_param['floor'] = True "
            "leaves out the rows and columns past the last whole window"
        )
    return PH, PW, stride, H_out, W_out


def check_labels(
    fn: str, y: Any, num_rows: int, num_classes: int | None, name: str = "y", x: str = "x"
) -> None:
    """Raise unless ``y`` holds ``num_rows`` integer labels in ``[0, num_classes)``
    (``num_classes`` None: only ``>= 0``). ``name`` and ``x`` name the arrays in messages."""
    check_array(fn, name, y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: expected integer labels {name}, got dtype {y.dtype}")
    if _shape(y) != (num_rows,):
        # One score row per label (one-hot or soft labels) is the usual mix-up.
        hint = (
            "; one class index per example is expected, not one-hot rows "
            f"(use {name}.argmax(axis=1))"
            if y.ndim == 2 and len(y) == num_rows
            else ""
        )
        raise ValueError(
            f"{fn}: expected {name} of shape ({num_rows},) to match {x}, got {_shape(y)}{hint}"
        )
    if not num_rows:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = "0 or more" if num_classes is None else f"in [0, {num_classes})"
        raise ValueError(
            f"{fn}: expected labels {bound}, got {name} with values from {low} to {high}"
        )


class NonFiniteError(ValueError):
    """An array that must be finite holds a NaN or an infinity."""


# Rows scanned at a time: the boolean mask of a whole training set would double its memory.
_FINITE_BLOCK = 1 << 22


def check_finite(fn: str, name: str, a: Any) -> None:
    """Raise :class:`NonFiniteError` naming the first index of ``a`` that is NaN or infinite.

    Integer and boolean arrays are finite by construction and are not scanned, nor is an
    array-like that says so (``all_finite``, as :class:`nndl.datasets.StandardizedImages`); a
    float array is scanned once, a block of rows at a time, and the index is only looked
    for in the block that fails.
    """
    if getattr(a, "all_finite", False) is True:
        return
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or a.size == 0:
        return
    scalar = a.ndim == 0
    a = a.reshape(1) if scalar else a
    step = max(1, _FINITE_BLOCK // (a.size // len(a)))
    for start in range(0, len(a), step):
        block = a[start : start + step]  # a view: no copy of the whole array
        if np.isfinite(block).all():
            continue
        first = np.argwhere(~np.isfinite(block))[0]
        where = (int(start + first[0]), *(int(i) for i in first[1:]))
        raise NonFiniteError(
            f"{fn}: {name} holds a non-finite value ({a[where]}) at index "
            f"{() if scalar else where}; expected finite numbers"
        )


def check_nonempty(fn: str, x: Any) -> None:
    """Raise unless ``x`` has at least one row: a mean over no examples is a silent nan."""
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: expected at least one example, got x of shape {_shape(x)}")


BN_MODES = ("train", "test")


def check_mode(fn: str, pname: str, params: Mapping[str, Any]) -> str:
    """Return ``params['mode']`` after checking it is ``'train'`` or ``'test'``."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{fn}: expected {pname} to be a dict, got {type(params).__name__}")
    mode = params.get("mode", "train")
    if mode not in BN_MODES:
        raise ValueError(f"{fn}: {pname}['mode'] must be one of {BN_MODES}, got {mode!r}")
    return mode


def check_dropout_p(fn: str, p: Any) -> float:
    """Return the keep probability ``p`` after checking it lies in (0, 1]."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
        raise ValueError(
            f"{fn}: expected dropout_param['p'] (probability of keeping a unit) in (0, 1], "
            f"got {p!r}"
        )
    return float(p)


def check_count(fn: str, name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` as an int after checking it is a whole number ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: expected {name} to be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{fn}: expected {name} >= {minimum}, got {value}")
    return int(value)


def check_real(
    fn: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a finite real number in range.

    ``minimum`` / ``maximum`` are inclusive bounds; with ``above`` the value must be
    strictly greater than ``minimum``. NaN and infinities are always refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: expected {name} to be a number, got {value!r}")
    x = float(value)
    if not np.isfinite(x):
        raise ValueError(f"{fn}: expected {name} to be a finite number, got {x}")
    if minimum is not None and (x <= minimum if above else x < minimum):
        raise ValueError(f"{fn}: expected {name} {'>' if above else '>='} {minimum:g}, got {x:g}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{fn}: expected {name} <= {maximum:g}, got {x:g}")
    return x


def conv_options(fn: str, conv_param: Mapping[str, Any], default_bytes: int) -> tuple[bool, int]:
    """Return the fast conv's ``(recompute, col_buffer_bytes)`` options from ``conv_param``.

    ``recompute`` must be a bool (default False) and ``col_buffer_bytes`` an int >= 1
    (default ``default_bytes``).
    """
    recompute = check_bool(fn, "conv_param['recompute']", conv_param.get("recompute", False))
    budget = check_count(
        fn, "conv_param['col_buffer_bytes']", conv_param.get("col_buffer_bytes", default_bytes), 1
    )
    return recompute, budget


def check_probability(fn: str, name: str, value: Any) -> float:
    """Return ``value`` as a float after checking it is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{fn}: expected {name} in [0, 1], got {value!r}")
    return float(value)


def check_spatial(fn: str, x: Any) -> None:
    """Raise unless ``x`` is a floating point (N, C, H, W) array with H, W >= 1."""
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")
    check_float(fn, "x", x)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{fn}: expected H and W >= 1, got x of shape {_shape(x)}")


# --- booleans and layer-spec arguments --------------------------------------------------


def is_bool(value: Any) -> bool:
    """True for a Python or NumPy bool (the one test of "is a flag" in nndl)."""
    return isinstance(value, (bool, np.bool_))


def check_bool(fn: str, name: str, value: Any) -> bool:
    """``value`` as a bool; a TypeError naming ``fn`` and ``name`` unless it is one."""
    if not is_bool(value):
        raise TypeError(f"{fn}: expected {name} to be a bool, got {value!r}")
    return bool(value)


# The checks of a layer spec's arguments (nndl.nn): errors name the spec key, as the spec
# is what the user wrote.


def int_arg(key: str, value: Any, minimum: int = 1) -> int:
    """A spec argument that must be an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{key}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def float_arg(key: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    """A spec argument that must be a number in ``[low, high]`` (``(low, high]`` with
    ``open_low``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{key}: expected a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def bool_arg(key: str, value: Any) -> bool:
    """A spec argument that must be true or false."""
    if not is_bool(value):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return bool(value)


__all__ = [
    "check_array",
    "check_float",
    "check_ndim",
    "check_same_shape",
    "check_dout",
    "check_vector",
    "output_size",
    "conv_shapes",
    "pool_shapes",
    "check_labels",
    "NonFiniteError",
    "check_finite",
    "check_nonempty",
    "BN_MODES",
    "check_mode",
    "check_dropout_p",
    "check_count",
    "check_real",
    "conv_options",
    "check_probability",
    "check_spatial",
    "is_bool",
    "check_bool",
    "int_arg",
    "float_arg",
    "bool_arg",
]
