"""``ThreeLayerConvNet`` and ``ConvNet``: a re-export of :mod:`nndl.models.cnn`."""

from .models.cnn import ConvNet, ThreeLayerConvNet

__all__ = [
    "ConvNet",
    "ThreeLayerConvNet",
]
