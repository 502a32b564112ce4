"""``TwoLayerNet`` and ``FullyConnectedNet``: a re-export of :mod:`nndl.models.fc_net`."""

from .models.fc_net import FullyConnectedNet, TwoLayerNet

__all__ = [
    "FullyConnectedNet",
    "TwoLayerNet",
]
