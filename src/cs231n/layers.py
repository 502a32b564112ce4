"""Re-export of :mod:`nndl.layers` under its classic CS231n name."""

from nndl.layers import *  # noqa: F403
