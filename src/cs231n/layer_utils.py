"""Re-export of :mod:`nndl.layer_utils` under its classic CS231n name.

The classic ``cs231n/layer_utils.py`` also held the conv sandwiches (``conv_relu_forward``,
``conv_relu_pool_forward``, ...), so they are re-exported here too.
"""

from nndl.conv_layer_utils import *  # noqa: F403
from nndl.layer_utils import *  # noqa: F403
