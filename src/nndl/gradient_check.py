"""Numerical gradients by centred differences, for checking analytic backward passes.

Use float64 inputs: with float32 the rounding error of ``f`` swamps the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

import numpy as np

from .validation import check_float


def rel_error(x, y) -> float:
    """``max(|x - y| / max(1e-8, |x| + |y|))``, the relative error used throughout."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, verbose: bool = True, h: float = 1e-5
) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x``, one entry at a time.

    ``x`` is perturbed in place by +-h and restored after each entry, so ``f`` may close
    over it. With ``verbose`` each entry's index and gradient are printed.
    """
    check_float("eval_numerical_gradient", "x", x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, df: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Gradient of ``sum(f(x) * df)`` at ``x``: the backward pass of an array function.

    ``x`` is perturbed in place and restored after each entry.
    """
    check_float("eval_numerical_gradient_array", "x", x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), copy=True)
        x[ix] = old - h
        neg = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def grad_check_sparse(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    analytic_grad: np.ndarray,
    num_checks: int = 10,
    h: float = 1e-5,
    seed: int | None = None,
) -> list[float]:
    """Compare ``analytic_grad`` with numerical gradients at ``num_checks`` random entries.

    Prints one line per entry (numerical, analytic, relative error) and returns the
    relative errors. ``seed`` makes the choice of entries reproducible without touching
    NumPy's global random state.
    """
    check_float("grad_check_sparse", "x", x)
    rng = Random(seed)
    errors = []
    for _ in range(num_checks):
        ix = tuple(rng.randrange(m) for m in x.shape)
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        num = (fxph - fxmh) / (2 * h)
        ana = analytic_grad[ix]
        err = abs(num - ana) / max(1e-8, abs(num) + abs(ana))
        errors.append(float(err))
        print(f"numerical: {num:f} analytic: {ana:f}, relative error: {err:e}")
    return errors


__all__ = [
    "rel_error",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "grad_check_sparse",
]
