"""Array-module lookup so layer code runs on NumPy today and CuPy later."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def get_array_module(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``.

    CuPy is only consulted when it is already imported, so NumPy users never pay for
    the import and never need it installed.
    """
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


__all__ = ["get_array_module"]
