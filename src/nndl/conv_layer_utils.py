"""Composite conv layers (the classic ``conv_layer_utils`` module): a re-export of
:mod:`nndl.kernels.conv_blocks`.
"""

from .kernels.conv_blocks import (
    conv_block_backward,
    conv_block_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_backward,
    conv_bn_relu_pool_forward,
    conv_pool_bn_relu_backward,
    conv_pool_bn_relu_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)

__all__ = [
    "conv_block_backward",
    "conv_block_forward",
    "conv_bn_relu_backward",
    "conv_bn_relu_forward",
    "conv_bn_relu_pool_backward",
    "conv_bn_relu_pool_forward",
    "conv_pool_bn_relu_backward",
    "conv_pool_bn_relu_forward",
    "conv_relu_backward",
    "conv_relu_forward",
    "conv_relu_pool_backward",
    "conv_relu_pool_forward",
]
