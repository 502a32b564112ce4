"""Re-export of :mod:`nndl.conv_layer_utils` under its classic CS231n name."""

from nndl.conv_layer_utils import *  # noqa: F403
