"""``python -m nndl``: the same command line as the ``nndl`` script."""

import sys

from .cli import main

sys.exit(main())
