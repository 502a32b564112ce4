"""The fast layers' internal memory layout: channels first, batch last.

Internally every activation is stored as a (C, H, W, N) buffer. The fast layers return
it as an (N, C, H, W) *view* (``buf.transpose(3, 0, 1, 2)``), so callers see the usual
shape, and the next fast layer gets its (C, H, W, N) buffer back with no copy. Why: a
convolution is a GEMM ``(F, C*k*k) @ (C*k*k, H'*W'*N)`` whose output IS the
(F, H', W', N) buffer (no transposed copy between GEMMs), per-channel reductions (bias,
batch norm) run over contiguous rows, and every strided slice along H or W keeps
contiguous runs of N elements, where an (N, C, H, W) layout leaves runs of a few pixels.
An input in another layout (the data batch, a caller's dout) costs one transposing copy.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import parallel


def to_internal(x):
    """The (C, H, W, N) view of an (N, C, H, W) array, made contiguous if it is not
    (a NumPy copy runs on the pool's threads, in blocks of rows)."""
    xc = x.transpose(1, 2, 3, 0)
    if xc.flags.c_contiguous:
        return xc
    if get_array_module(x) is not np:
        return get_array_module(x).ascontiguousarray(xc)
    C, H, W, N = xc.shape
    out = np.empty(xc.shape, x.dtype)
    rows, src = out.reshape(C * H, W, N), xc.reshape(C * H, W, N)

    def block(r0: int, r1: int) -> None:
        rows[r0:r1] = src[r0:r1]

    parallel.run(block, parallel.blocks(C * H, W * N * x.dtype.itemsize))
    return out


def from_internal(a):
    """The (N, C, H, W) view of a (C, H, W, N) buffer."""
    return a.transpose(3, 0, 1, 2)


def is_internal(x) -> bool:
    """Whether the (N, C, H, W) array x is a view of a contiguous (C, H, W, N) buffer."""
    return x.transpose(1, 2, 3, 0).flags.c_contiguous


__all__ = ["from_internal", "is_internal", "to_internal"]
