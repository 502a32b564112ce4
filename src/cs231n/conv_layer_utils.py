"""Re-export of :mod:`nndl.conv_layer_utils` under its classic CS231n name."""

from nndl.kernels.conv_blocks import *  # noqa: F403
