"""Re-export of :mod:`nndl.conv_layers` under its classic CS231n name."""

from nndl.conv_layers import *  # noqa: F403
