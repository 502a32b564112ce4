"""An exponential moving average of the weights: a re-export of :mod:`nndl.train.ema`."""

from .train.ema import EMA

__all__ = [
    "EMA",
]
