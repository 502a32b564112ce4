"""Solver callbacks: a re-export of :mod:`nndl.train.callbacks`."""

from .train.callbacks import Callback, History, PrintProgress

__all__ = [
    "Callback",
    "History",
    "PrintProgress",
]
