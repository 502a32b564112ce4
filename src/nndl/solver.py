"""The ``Solver``: a re-export of :mod:`nndl.train.solver`."""

from .train.solver import Solver

__all__ = [
    "Solver",
]
