"""Re-export of :mod:`nndl.gradient_check` under its classic CS231n name."""

from nndl.gradient_check import *  # noqa: F403
