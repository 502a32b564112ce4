"""Re-export of :mod:`nndl.optim` under its classic CS231n name."""

from nndl.optim import *  # noqa: F403
