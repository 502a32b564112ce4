"""``python -m nndl.tune``: the same as ``nndl tune``."""

import sys

from . import main

sys.exit(main())
