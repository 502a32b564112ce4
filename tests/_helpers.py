"""Shared helpers for the layer tests: independent reference layers and hypothesis strategies.

The references here are deliberately written differently from the library (vectorised
``sliding_window_view`` + ``einsum`` instead of loops or ``as_strided`` im2col), so a test
that compares the two would catch a bug shared by the naive and fast layers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from nndl.gradient_check import eval_numerical_gradient_array


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int):
    """Cross-correlation of x (N, C, H, W) with w (F, C, HH, WW) via windows and einsum."""
    HH, WW = w.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # windows: (N, C, H_full, W_full, HH, WW); keep every stride-th window start.
    windows = sliding_window_view(x_pad, (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,fcij->nfhw", windows, w) + b[None, :, None, None]


def pool_reference(x: np.ndarray, PH: int, PW: int, stride: int):
    """Max pooling of x (N, C, H, W) via windows, no padding."""
    windows = sliding_window_view(x, (PH, PW), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(4, 5))


def numeric_grads(
    forward: Callable[..., np.ndarray], inputs: list[np.ndarray], dout: np.ndarray
) -> list[np.ndarray]:
    """Numerical gradients of ``sum(forward(*inputs) * dout)`` w.r.t. each input.

    ``forward`` returns the output array only; every input is perturbed in place.
    """
    return [eval_numerical_gradient_array(lambda _: forward(*inputs), a, dout) for a in inputs]


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Float64 array of ``shape`` whose entries differ pairwise by at least 0.1.

    Max pooling is only differentiable away from ties; spacing the values far beyond the
    finite-difference step keeps the numerical gradient exact.
    """
    size = int(np.prod(shape))
    vals = rng.permutation(size).astype(np.float64) * 0.1 - 0.05 * size
    vals += rng.uniform(-0.01, 0.01, size=size)
    return vals.reshape(shape)


@st.composite
def conv_configs(draw, max_out: int = 3, max_kernel: int = 4, max_stride: int = 3):
    """Draw ``(x_shape, w_shape, stride, pad)`` whose output size is whole.

    Output sizes, kernels, strides and pads are drawn independently for H and W (so
    inputs and kernels are often non-square); the input size is then derived from them.
    """
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 2))
    F = draw(st.integers(1, 3))
    stride = draw(st.integers(1, max_stride))
    HH = draw(st.integers(1, max_kernel))
    WW = draw(st.integers(1, max_kernel))
    H_out = draw(st.integers(1, max_out))
    W_out = draw(st.integers(1, max_out))
    span_h = (H_out - 1) * stride + HH
    span_w = (W_out - 1) * stride + WW
    # The padded input must be at least one real pixel wide in each direction.
    pad = draw(st.integers(0, min(2, (min(span_h, span_w) - 1) // 2)))
    H = span_h - 2 * pad
    W = span_w - 2 * pad
    return (N, C, H, W), (F, C, HH, WW), stride, pad


@st.composite
def pool_configs(draw, max_out: int = 3, max_window: int = 3, max_stride: int = 3):
    """Draw ``(x_shape, PH, PW, stride)`` with a whole output size; windows may overlap."""
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 2))
    PH = draw(st.integers(1, max_window))
    PW = draw(st.integers(1, max_window))
    stride = draw(st.integers(1, max_stride))
    H_out = draw(st.integers(1, max_out))
    W_out = draw(st.integers(1, max_out))
    H = (H_out - 1) * stride + PH
    W = (W_out - 1) * stride + PW
    return (N, C, H, W), PH, PW, stride
