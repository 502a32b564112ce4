"""Fully connected layers, activations, batch norm, dropout and losses (the classic
``layers`` module): a re-export of :mod:`nndl.functional`, where each family has its module.
"""

from .functional.activation import gelu_backward, gelu_forward, relu_backward, relu_forward
from .functional.dropout import dropout_backward, dropout_forward
from .functional.linear import add_backward, add_forward, affine_backward, affine_forward
from .functional.loss import softmax_loss, svm_loss
from .functional.norm import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward

__all__ = [
    "add_backward",
    "add_forward",
    "affine_backward",
    "affine_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "dropout_backward",
    "dropout_forward",
    "gelu_backward",
    "gelu_forward",
    "relu_backward",
    "relu_forward",
    "softmax_loss",
    "svm_loss",
]
