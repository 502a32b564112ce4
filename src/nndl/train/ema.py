"""An exponential moving average (EMA) of the weights, and its lookahead variant.

Evaluating with an average of the recent weights instead of the last ones smooths out
the noise of the final SGD steps (Polyak averaging); airbench94 writes the average back
into the network every few steps ("lookahead"). Typical use::

    ema = EMA(decay=0.99, every=5)
    for step in range(num_steps):
        ...update model.params...
        ema.update(model.params)
    with ema.swapped(model):          # evaluate with the averaged weights
        acc = solver.check_accuracy(X_val, y_val)
    # model.params hold the training weights again here

The average is a pure function of the sequence of weights passed to :meth:`EMA.update`
and the calls' count, so :meth:`EMA.state_dict` and :meth:`EMA.load_state_dict` make a
resumed run's average exactly the uninterrupted run's.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["EMA"]

_STATE_KEYS = ("decay", "every", "warmup", "lookahead", "calls", "num_updates", "shadow")


def _params_of(fn: str, target: Any) -> Mapping[str, np.ndarray]:
    """The live arrays of a model (``target.params``) or of a dict of arrays."""
    params = getattr(target, "params", target)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{fn}: expected a model with a params dict or a dict of arrays, got "
            f"{type(target).__name__}"
        )
    return params


def _check_decay(fn: str, decay: Any) -> float:
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 <= decay < 1:
        raise ValueError(f"{fn}: expected decay in [0, 1), got {decay!r}")
    return float(decay)


class EMA:
    """Exponential moving average of a set of named arrays (a model's ``params``).

    :meth:`update` is called after every training step; every ``every``-th call it
    averages: the first average copies the weights, each later one sets
    ``avg = d * avg + (1 - d) * w``. With ``warmup`` the decay of the k-th average after
    the first is ``d = min(decay, (1 + k) / (10 + k))`` (TensorFlow's warm-up), so the
    start of training is forgotten quickly; otherwise ``d = decay``. ``decay`` is per
    average: to match a per-step decay ``r`` with ``every = n``, pass ``r ** n``.

    With ``lookahead`` every average is also written back into the weights (in place),
    as airbench94's lookahead does; otherwise the weights are never touched outside
    :meth:`swapped` and :meth:`copy_to`.

    Attributes: ``decay``, ``every``, ``warmup``, ``lookahead``, ``calls`` (updates
    called), ``num_updates`` (averages taken).
    """

    def __init__(
        self,
        decay: float = 0.999,
        *,
        every: int = 1,
        warmup: bool = True,
        lookahead: bool = False,
    ) -> None:
        fn = "EMA"
        self.decay = _check_decay(fn, decay)
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"{fn}: expected every to be an int >= 1, got {every!r}")
        self.every = int(every)
        self.warmup = bool(warmup)
        self.lookahead = bool(lookahead)
        self.calls = 0
        self.num_updates = 0
        self._shadow: dict[str, np.ndarray] = {}

    def decay_at(self, k: int, decay: float | None = None) -> float:
        """The decay of the average taken after ``k`` earlier ones (``k >= 1``), from
        ``decay`` (default: ``self.decay``) capped by the warm-up."""
        d = self.decay if decay is None else decay
        return min(d, (1 + k) / (10 + k)) if self.warmup else d

    @property
    def averages(self) -> dict[str, np.ndarray]:
        """The averaged arrays (read-only views; copy them to keep or modify)."""
        out = {}
        for name, a in self._shadow.items():
            view = a.view()
            view.flags.writeable = False
            out[name] = view
        return out

    def _check_matches(self, fn: str, params: Mapping[str, np.ndarray]) -> None:
        if set(params) != set(self._shadow):
            raise ValueError(
                f"{fn}: expected the arrays {sorted(self._shadow)} that the average holds, "
                f"got {sorted(params)}"
            )
        for name, a in self._shadow.items():
            if np.shape(params[name]) != a.shape:
                raise ValueError(
                    f"{fn}: expected {name!r} of shape {a.shape}, got {np.shape(params[name])}"
                )

    def update(self, params: Mapping[str, np.ndarray], decay: float | None = None) -> bool:
        """Count a training step; every ``every``-th call, fold ``params`` into the
        average (and, with ``lookahead``, write it back). Returns whether it averaged.

        ``decay`` replaces ``self.decay`` for this one average (the warm-up still caps
        it), for a decay that follows a schedule; it must itself be a function of the
        step count for a resumed run to be exact.
        """
        fn = "EMA.update"
        params = _params_of(fn, params)
        self.calls += 1
        if self.calls % self.every:
            return False
        if not self._shadow:
            for name, w in params.items():
                if not (hasattr(w, "dtype") and np.asarray(w).dtype.kind == "f"):
                    raise TypeError(f"{fn}: expected {name!r} to be a floating point array")
            self._shadow = {name: np.array(w, copy=True) for name, w in params.items()}
        else:
            self._check_matches(fn, params)
            if decay is not None:
                decay = _check_decay(fn, decay)
            d = self.decay_at(self.num_updates, decay)
            for name, avg in self._shadow.items():
                step = np.subtract(params[name], avg, dtype=avg.dtype)
                step *= 1.0 - d
                avg += step
        self.num_updates += 1
        if self.lookahead:
            self.copy_to(params)
        return True

    def _require_average(self, fn: str) -> None:
        if not self._shadow:
            raise RuntimeError(f"{fn}: no average yet; call update(params) first")

    def copy_to(self, target: Any) -> None:
        """Write the averages into the model's (or dict's) arrays, in place, for good."""
        fn = "EMA.copy_to"
        self._require_average(fn)
        params = _params_of(fn, target)
        self._check_matches(fn, params)
        for name, avg in self._shadow.items():
            np.copyto(params[name], avg)

    @contextmanager
    def swapped(self, target: Any) -> Iterator[Any]:
        """Within the ``with`` block the model's (or dict's) arrays hold the averages;
        afterwards, even after an exception, they hold their own values again.

        The values are copied in place, so whatever else holds these arrays sees the
        swap too; the block must not train the model (its changes are undone).
        """
        fn = "EMA.swapped"
        self._require_average(fn)
        params = _params_of(fn, target)
        self._check_matches(fn, params)
        saved = {name: np.array(params[name], copy=True) for name in self._shadow}
        try:
            self.copy_to(params)
            yield target
        finally:
            for name, w in saved.items():
                np.copyto(params[name], w)

    def state_dict(self) -> dict[str, Any]:
        """Settings, counters and copies of the averages (``"shadow"``: name -> array)."""
        return {
            "decay": self.decay,
            "every": self.every,
            "warmup": self.warmup,
            "lookahead": self.lookahead,
            "calls": self.calls,
            "num_updates": self.num_updates,
            "shadow": {name: a.copy() for name, a in self._shadow.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (settings included)."""
        fn = "EMA.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{fn}: expected a dict, got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"{fn}: state is missing {missing}; expected keys {list(_STATE_KEYS)}")
        fresh = EMA(
            state["decay"],
            every=state["every"],
            warmup=state["warmup"],
            lookahead=state["lookahead"],
        )
        for key in ("calls", "num_updates"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{fn}: expected {key} to be an int >= 0, got {value!r}")
        if not isinstance(state["shadow"], Mapping):
            raise TypeError(f"{fn}: expected shadow to be a dict of arrays")
        if bool(state["shadow"]) != (state["num_updates"] > 0):
            raise ValueError(f"{fn}: num_updates {state['num_updates']} does not fit the shadow")
        self.decay, self.every = fresh.decay, fresh.every
        self.warmup, self.lookahead = fresh.warmup, fresh.lookahead
        self.calls = int(state["calls"])
        self.num_updates = int(state["num_updates"])
        self._shadow = {name: np.array(a, copy=True) for name, a in state["shadow"].items()}
