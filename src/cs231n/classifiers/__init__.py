"""Classic CS231n model modules, re-exporting the models of :mod:`nndl`."""

from nndl.cnn import ConvNet, ThreeLayerConvNet  # noqa: F401
from nndl.fc_net import FullyConnectedNet, TwoLayerNet  # noqa: F401
