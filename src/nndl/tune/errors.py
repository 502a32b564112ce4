"""The one error type of ``nndl tune``."""

from __future__ import annotations

__all__ = ["TuneError"]


class TuneError(Exception):
    """Bad input to ``nndl tune`` (a flag, the search space, the storage): reported as
    ``nndl tune: error: ...`` with exit status 2."""
