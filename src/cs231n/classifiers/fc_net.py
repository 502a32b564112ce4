"""Re-export of :mod:`nndl.fc_net` under its classic CS231n name."""

from nndl.fc_net import FullyConnectedNet, TwoLayerNet  # noqa: F401
from nndl.models.fc_net import *  # noqa: F403
