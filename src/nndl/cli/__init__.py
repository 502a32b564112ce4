"""The ``nndl`` command line (the console script ``nndl = nndl.cli:main``)."""

from .. import __version__  # noqa: F401
from .entry import (
    build_model,  # noqa: F401
    main,
)
from .options import DEFAULTS, build_kwargs, build_parser, settings_from_args  # noqa: F401

__all__ = ["main"]
