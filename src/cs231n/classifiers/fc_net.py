"""Re-export of :mod:`nndl.fc_net` under its classic CS231n name."""

from nndl.fc_net import *  # noqa: F403
from nndl.fc_net import FullyConnectedNet, TwoLayerNet  # noqa: F401
