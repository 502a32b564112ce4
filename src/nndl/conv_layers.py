"""Convolution, pooling and spatial batch norm in their reference ("naive") form (the
classic ``conv_layers`` module): a re-export of :mod:`nndl.functional`.
"""

from .functional.conv import conv_backward_naive, conv_forward_naive
from .functional.norm import spatial_batchnorm_backward, spatial_batchnorm_forward
from .functional.pool import (
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    global_avg_pool_backward,
    global_avg_pool_forward,
    global_max_pool_backward,
    global_max_pool_forward,
    max_pool_backward_naive,
    max_pool_forward_naive,
)

__all__ = [
    "avg_pool_backward_naive",
    "avg_pool_forward_naive",
    "conv_backward_naive",
    "conv_forward_naive",
    "global_avg_pool_backward",
    "global_avg_pool_forward",
    "global_max_pool_backward",
    "global_max_pool_forward",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
]
