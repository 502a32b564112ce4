"""Composite fully connected layers (the classic ``layer_utils`` module): a re-export of
:mod:`nndl.functional.sandwiches`.
"""

from .functional.sandwiches import (
    affine_batchnorm_relu_backward,
    affine_batchnorm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)

__all__ = [
    "affine_batchnorm_relu_backward",
    "affine_batchnorm_relu_forward",
    "affine_relu_backward",
    "affine_relu_forward",
]
