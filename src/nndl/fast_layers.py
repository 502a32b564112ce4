"""Fast convolution and max pooling (the classic ``fast_layers`` module): a re-export of
:mod:`nndl.kernels.conv` and :mod:`nndl.kernels.max_pool`, which say how they are fast.
"""

from .kernels.conv import (
    ALGORITHMS,
    COL_BUFFER_BYTES,
    WINOGRAD_MIN_CHANNELS,
    conv_backward_fast,
    conv_forward_fast,
    conv_pool_backward_fast,
    conv_pool_forward_fast,
)
from .kernels.layout import from_internal, is_internal, to_internal
from .kernels.max_pool import max_pool_backward_fast, max_pool_forward_fast
from .kernels.scratch import free_scratch

__all__ = [
    "ALGORITHMS",
    "COL_BUFFER_BYTES",
    "WINOGRAD_MIN_CHANNELS",
    "conv_backward_fast",
    "conv_forward_fast",
    "conv_pool_backward_fast",
    "conv_pool_forward_fast",
    "free_scratch",
    "from_internal",
    "is_internal",
    "max_pool_backward_fast",
    "max_pool_forward_fast",
    "to_internal",
]
