"""Re-export of :mod:`nndl.layers` under its classic CS231n name.

The classic ``cs231n/layers.py`` also held the naive conv, pool and spatial batch norm
layers, so notebooks reach them through ``from cs231n.layers import *``.
"""

from nndl.conv_layers import *  # noqa: F403
from nndl.layers import *  # noqa: F403
