"""Re-export of :mod:`nndl.cnn` under its classic CS231n name."""

from nndl.cnn import ConvNet, ThreeLayerConvNet  # noqa: F401
from nndl.models.cnn import *  # noqa: F403
