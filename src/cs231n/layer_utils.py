"""Re-export of :mod:`nndl.layer_utils` under its classic CS231n name."""

from nndl.layer_utils import *  # noqa: F403
