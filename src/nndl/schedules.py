"""Learning-rate schedules: a re-export of :mod:`nndl.train.schedules`."""

from .train.schedules import (
    SCHEDULES,
    Schedule,
    constant,
    cosine,
    exponential,
    learning_rate_at,
    linear,
    lr_decay_schedule,
    lr_multiplier,
    make_schedule,
    one_cycle,
    step,
    triangular,
)

__all__ = [
    "SCHEDULES",
    "Schedule",
    "constant",
    "cosine",
    "exponential",
    "learning_rate_at",
    "linear",
    "lr_decay_schedule",
    "lr_multiplier",
    "make_schedule",
    "one_cycle",
    "step",
    "triangular",
]
