"""Re-export of :mod:`nndl.fast_layers` under its classic CS231n name."""

from nndl.fast_layers import *  # noqa: F403
