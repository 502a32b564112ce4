"""Re-export of :mod:`nndl.solver` under its classic CS231n name."""

from nndl.solver import *  # noqa: F403
from nndl.solver import Solver  # noqa: F401
