"""Learning-rate schedules as pure functions of the iteration counter.

A schedule gives a *multiplier* of the base learning rate (the update rule's
``learning_rate``) for update ``t`` of ``total``, where ``t`` counts the updates already
done (0 for the first). It depends on nothing else, so a resumed run that knows its
iteration counter gets exactly the learning rates of an uninterrupted one, and every
parameter group's own multiplier composes with it by multiplication.

A schedule is chosen by a JSON-serialisable spec, a registry name or a dict::

    {"name": "triangular", "start": 0.2, "peak_at": 0.23, "end": 0.07}

:func:`make_schedule` validates it (an unknown key or name is an error that lists the
valid ones) and fills in the defaults; the result's ``spec`` is what a run records.

The shaped schedules (``linear``, ``triangular``, ``cosine``, ``one_cycle``) are laid
out on the training progress ``p = t / total``, so their shape is the same for any
length: the first update uses the value at ``p = 0`` and the value at ``p = 1`` is the
one after the last update. ``step`` and ``exponential`` count epochs
(``t / iterations_per_epoch``), like the classic per-epoch decay.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .specs import Check, is_fraction, is_nonneg, is_positive, parse_spec

__all__ = [
    "SCHEDULES",
    "Schedule",
    "make_schedule",
    "lr_multiplier",
    "learning_rate_at",
    "lr_decay_schedule",
    "constant",
    "step",
    "exponential",
    "linear",
    "triangular",
    "cosine",
    "one_cycle",
]

ScheduleFn = Callable[..., float]


def _ipe(fn: str, iterations_per_epoch: int | None) -> int:
    if iterations_per_epoch is None:
        raise ValueError(
            f"Schedule({fn!r}): the schedule counts epochs, so it needs "
            "iterations_per_epoch; got None"
        )
    return iterations_per_epoch


def _ramp(p: float, a: float, b: float) -> float:
    """Linear from ``a`` at p = 0 to ``b`` at p = 1."""
    return a + (b - a) * p


def _cos_ramp(p: float, a: float, b: float) -> float:
    """Half a cosine from ``a`` at p = 0 to ``b`` at p = 1 (flat at both ends)."""
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * p))


def _two_phase(p: float, turn: float, first: Callable, second: Callable) -> float:
    """``first(q)`` on [0, turn] and ``second(q)`` on [turn, 1], each with q in [0, 1].

    ``turn`` may be 0 or 1 (no first or no second phase) without dividing by zero.
    """
    if p < turn or turn >= 1.0:
        return first(p / turn)
    return second((p - turn) / (1.0 - turn))


# --- the schedules (t: updates done, total: all updates, iterations_per_epoch) ---------


def constant(t: int, total: int, iterations_per_epoch: int | None) -> float:
    """Always 1: the base learning rate throughout."""
    return 1.0


def step(
    t: int,
    total: int,
    iterations_per_epoch: int | None,
    *,
    milestones: list[float],
    gamma: float = 0.1,
) -> float:
    """``gamma ** k`` where k is the number of ``milestones`` (in epochs) reached.

    ``{"name": "step", "milestones": [30, 60], "gamma": 0.1}``: 1 for epochs 0..29,
    0.1 from epoch 30 on, 0.01 from epoch 60 on (PyTorch's ``MultiStepLR``).
    """
    epoch = t / _ipe("step", iterations_per_epoch)
    return float(gamma) ** sum(1 for m in milestones if epoch >= m)


def exponential(t: int, total: int, iterations_per_epoch: int | None, *, gamma: float) -> float:
    """``gamma ** epoch`` with whole epochs: the classic ``lr_decay`` after each epoch."""
    return float(gamma) ** (t // _ipe("exponential", iterations_per_epoch))


def linear(
    t: int,
    total: int,
    iterations_per_epoch: int | None,
    *,
    warmup: float = 0.0,
    start: float = 0.0,
    end: float = 0.0,
) -> float:
    """Warm-up then linear decay: from ``start`` up to 1 over the first ``warmup``
    fraction of training, then linearly down to ``end`` at the end."""
    p = min(t / total, 1.0)
    return _two_phase(p, warmup, lambda q: _ramp(q, start, 1.0), lambda q: _ramp(q, 1.0, end))


def triangular(
    t: int,
    total: int,
    iterations_per_epoch: int | None,
    *,
    start: float = 0.2,
    peak_at: float = 0.23,
    end: float = 0.07,
) -> float:
    """Linear from ``start`` to 1 at the fraction ``peak_at`` of training, then linear
    down to ``end`` (airbench94's shape and defaults)."""
    p = min(t / total, 1.0)
    return _two_phase(p, peak_at, lambda q: _ramp(q, start, 1.0), lambda q: _ramp(q, 1.0, end))


def cosine(
    t: int,
    total: int,
    iterations_per_epoch: int | None,
    *,
    warmup: float = 0.0,
    start: float = 0.0,
    end: float = 0.0,
) -> float:
    """Optional linear warm-up from ``start`` to 1 over the fraction ``warmup``, then
    half a cosine from 1 down to ``end`` (SGDR without restarts)."""
    p = min(t / total, 1.0)
    return _two_phase(p, warmup, lambda q: _ramp(q, start, 1.0), lambda q: _cos_ramp(q, 1.0, end))


def one_cycle(
    t: int,
    total: int,
    iterations_per_epoch: int | None,
    *,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
) -> float:
    """The one-cycle policy (Smith; PyTorch's ``OneCycleLR`` laid out on t / total).

    From ``1 / div_factor`` up to 1 over the fraction ``pct_start``, then down to
    ``1 / (div_factor * final_div_factor)``, both along half a cosine (``anneal="cos"``)
    or a straight line (``"linear"``).
    """
    p = min(t / total, 1.0)
    lo = 1.0 / div_factor
    ramp = _cos_ramp if anneal == "cos" else _ramp
    return _two_phase(
        p, pct_start, lambda q: ramp(q, lo, 1.0), lambda q: ramp(q, 1.0, lo / final_div_factor)
    )


SCHEDULES: dict[str, ScheduleFn] = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "linear": linear,
    "triangular": triangular,
    "cosine": cosine,
    "one_cycle": one_cycle,
}


def _is_milestones(v: Any) -> bool:
    return (
        isinstance(v, (list, tuple))
        and all(is_nonneg(m) for m in v)
        and all(a <= b for a, b in zip(v, v[1:], strict=False))
    )


CHECKS: dict[str, Check] = {
    "milestones": (_is_milestones, "a non-decreasing list of epochs >= 0"),
    "gamma": (is_positive, "a number > 0"),
    "warmup": (is_fraction, "a fraction of training in [0, 1]"),
    "peak_at": (is_fraction, "a fraction of training in [0, 1]"),
    "pct_start": (is_fraction, "a fraction of training in [0, 1]"),
    "start": (is_nonneg, "a multiplier >= 0"),
    "end": (is_nonneg, "a multiplier >= 0"),
    "div_factor": (is_positive, "a number > 0"),
    "final_div_factor": (is_positive, "a number > 0"),
    "anneal": (lambda v: v in ("cos", "linear"), "'cos' or 'linear'"),
}


def _check_counter(fn: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{fn}: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: ``schedule(t, total, iterations_per_epoch)`` is the
    multiplier for update ``t`` (0-based) of ``total``. ``spec`` is the complete spec."""

    spec: dict[str, Any]

    def __call__(self, t: int, total: int, iterations_per_epoch: int | None = None) -> float:
        fn = f"Schedule({self.spec['name']!r})"
        t = _check_counter(fn, "t", t, 0)
        total = _check_counter(fn, "total", total, 1)
        if iterations_per_epoch is not None:
            iterations_per_epoch = _check_counter(
                fn, "iterations_per_epoch", iterations_per_epoch, 1
            )
        options = {k: v for k, v in self.spec.items() if k != "name"}
        return float(SCHEDULES[self.spec["name"]](t, total, iterations_per_epoch, **options))

    def multipliers(self, total: int, iterations_per_epoch: int | None = None) -> np.ndarray:
        """The multipliers of all ``total`` updates, as a float64 vector (for plots)."""
        return np.array([self(t, total, iterations_per_epoch) for t in range(total)])


def make_schedule(spec: str | Mapping[str, Any] | Schedule | None) -> Schedule:
    """Validate a schedule spec (a name, a dict with ``"name"``, a Schedule, or None for
    ``constant``) and return the :class:`Schedule` with every default filled in."""
    if isinstance(spec, Schedule):
        return spec
    if spec is None:
        spec = "constant"
    return Schedule(parse_spec("make_schedule", "schedule", spec, SCHEDULES, CHECKS))


def lr_multiplier(
    spec: str | Mapping[str, Any] | Schedule | None,
    t: int,
    total: int,
    iterations_per_epoch: int | None = None,
) -> float:
    """The multiplier of the base learning rate for update ``t`` (0-based) of ``total``."""
    return make_schedule(spec)(t, total, iterations_per_epoch)


def learning_rate_at(
    base_lr: float,
    spec: str | Mapping[str, Any] | Schedule | None,
    t: int,
    total: int,
    iterations_per_epoch: int | None = None,
) -> float:
    """``base_lr`` times the schedule's multiplier for update ``t`` of ``total``."""
    return float(base_lr) * lr_multiplier(spec, t, total, iterations_per_epoch)


def lr_decay_schedule(lr_decay: float) -> dict[str, Any]:
    """The Solver's classic ``lr_decay`` (multiply after each epoch) as a schedule spec.

    In epoch ``e`` (0-based) the multiplier is ``lr_decay ** e``; 1.0 is ``constant``.
    """
    if lr_decay == 1.0:
        return {"name": "constant"}
    return make_schedule({"name": "exponential", "gamma": lr_decay}).spec
