"""Re-export of :mod:`nndl.data` under its classic CS231n name."""

from nndl.data import *  # noqa: F403
