"""The search space of ``nndl tune``: ``nndl train`` flags mapped to Optuna distributions.

A space is a JSON object whose keys are ``nndl train`` flags and whose values say how to
draw each one, with the keyword arguments of Optuna's ``suggest_*`` methods::

    {
      "--lr":          {"type": "float", "low": 3e-4, "high": 1e-2, "log": true},
      "--epochs":      {"type": "int", "low": 2, "high": 8, "step": 2},
      "--num-filters": {"type": "categorical", "choices": [[16, 32, 64], [32, 64, 128]]},
      "--batchnorm":   {"type": "categorical", "choices": [true, false]}
    }

Categorical choices become command-line words: a number or string is the flag's value,
a list its several values (``--num-filters 16 32 64``), ``true``/``false`` the flag or
its ``--no-`` form, ``null`` leaves the flag out (``nndl train``'s default). So a new
``nndl train`` flag is searchable with no change here. The Optuna parameter of a flag is
its name without the dashes (``lr``, ``num-filters``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.jsonfile import JSONLimitError, loads_bounded, read_bounded
from .errors import TuneError

__all__ = ["DEFAULT_SPACE", "SearchSpace", "load_space"]

# For the default model (a batch-normalised ConvNet trained with Adam): the learning rate
# and its decay, L2 regularisation, the widths of the three conv blocks and the batch
# size. Another --model needs a space of its own (--space FILE.json).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "--lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "--lr-decay": {"type": "float", "low": 0.3, "high": 1.0},
    "--reg": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "--num-filters": {
        "type": "categorical",
        "choices": [[8, 16, 32], [16, 32, 64], [32, 64, 128]],
    },
    "--batch-size": {"type": "categorical", "choices": [32, 64, 128]},
}

_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


class SearchSpace:
    """A checked search space: ``spec`` (the normalised JSON mapping) and, per flag, an
    Optuna distribution; :meth:`sample` draws a trial's flags."""

    def __init__(self, spec: Mapping[str, Any], source: str = "the search space"):
        if not isinstance(spec, Mapping) or not spec:
            raise TuneError(f"{source}: expected a JSON object of nndl train flags, got {spec!r}")
        self.source = source
        self.spec: dict[str, dict[str, Any]] = {}
        self.distributions: dict[str, Any] = {}  # flag -> optuna distribution
        self._words: dict[str, dict[Any, list[str]]] = {}  # flag -> choice -> argv words
        for key, value in spec.items():
            flag = _flag(key, source)
            if flag in self.spec:
                raise TuneError(f"{source}: {flag} is given twice")
            self.spec[flag] = dict(value) if isinstance(value, Mapping) else value
            self.distributions[flag] = self._distribution(flag, value)

    @staticmethod
    def param(flag: str) -> str:
        """The Optuna parameter name of ``flag``."""
        return flag.lstrip("-")

    def _distribution(self, flag: str, d: Any):
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        where = f"{self.source}: {flag}"
        if not isinstance(d, Mapping) or d.get("type") not in _KEYS:
            raise TuneError(
                f'{where}: expected an object with "type" float, int or categorical, got {d!r}'
            )
        unknown = sorted(set(d) - _KEYS[d["type"]])
        if unknown:
            raise TuneError(
                f"{where}: unknown key(s) {unknown} for type {d['type']}; "
                f"expected {sorted(_KEYS[d['type']])}"
            )
        try:
            if d["type"] == "categorical":
                return CategoricalDistribution(self._choices(flag, d.get("choices"), where))
            for k in ("low", "high"):
                if not _is_number(d.get(k), integer=d["type"] == "int"):
                    raise TuneError(
                        f"{where}: {k!r} must be a finite {d['type']}, got {d.get(k)!r}"
                    )
            if not isinstance(d.get("log", False), bool):
                raise TuneError(f"{where}: 'log' must be true or false, got {d['log']!r}")
            if d["type"] == "int":
                step = d.get("step", 1)
                if not _is_number(step, integer=True):
                    raise TuneError(f"{where}: 'step' must be an integer, got {step!r}")
                return IntDistribution(d["low"], d["high"], log=d.get("log", False), step=step)
            step = d.get("step")
            if step is not None and not _is_number(step):
                raise TuneError(f"{where}: 'step' must be a number, got {step!r}")
            return FloatDistribution(d["low"], d["high"], log=d.get("log", False), step=step)
        except ValueError as exc:  # Optuna's own checks: low <= high, log needs low > 0, ...
            raise TuneError(f"{where}: {exc}") from None

    def _choices(self, flag: str, choices: Any, where: str) -> list[Any]:
        if not isinstance(choices, list) or not choices:
            raise TuneError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
        words: dict[Any, list[str]] = {}
        labels = []
        for c in choices:
            label, argv = _choice_words(flag, c, where)
            if label in words:
                raise TuneError(f"{where}: choice {c!r} is given twice")
            words[label] = argv
            labels.append(label)
        self._words[flag] = words
        return labels

    def words(self, flag: str, value: Any) -> list[str]:
        """The ``nndl train`` words for ``value`` of ``flag`` (as Optuna returns it)."""
        if flag in self._words:
            return list(self._words[flag][value])
        if isinstance(value, float):
            return [flag, repr(value)]
        return [flag, str(value)]

    def candidates(self) -> dict[str, list[list[str]]]:
        """Per flag, the words of the values that bound its range (every choice, or the
        low and high ends): what a check before the first trial tries."""
        out = {}
        for flag, dist in self.distributions.items():
            if flag in self._words:
                out[flag] = list(self._words[flag].values())
            else:
                out[flag] = [self.words(flag, dist.low), self.words(flag, dist.high)]
        return out

    def sample(self, trial) -> list[str]:
        """Draw every flag for ``trial`` (an ``optuna.Trial``); its ``nndl train`` words."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        argv: list[str] = []
        for flag, dist in self.distributions.items():
            name = self.param(flag)
            if isinstance(dist, CategoricalDistribution):
                value = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, FloatDistribution):
                value = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
            else:
                value = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
            argv += self.words(flag, value)
        return argv


def load_space(path: str | None) -> SearchSpace:
    """The space in the JSON file ``path``, or :data:`DEFAULT_SPACE` when ``path`` is None."""
    if path is None:
        return SearchSpace(DEFAULT_SPACE, "the default search space")
    source = f"--space {path}"
    try:
        text = read_bounded(Path(path).expanduser(), source)
    except JSONLimitError as exc:
        raise TuneError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TuneError(f"{source}: cannot read it ({exc})") from None
    try:
        spec = loads_bounded(text, source)
    except JSONLimitError as exc:
        raise TuneError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise TuneError(f"{source}: not valid JSON ({exc})") from None
    return SearchSpace(spec, source)


def _flag(key: Any, source: str) -> str:
    if not isinstance(key, str) or not key.lstrip("-") or " " in key or "=" in key:
        raise TuneError(f'{source}: {key!r} is not an nndl train flag (like "--lr")')
    return "--" + key.lstrip("-")


def _is_number(v: Any, integer: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return isinstance(v, int) if integer else math.isfinite(v)


def _choice_words(flag: str, c: Any, where: str) -> tuple[Any, list[str]]:
    """(the Optuna choice, the argv words) of one categorical choice."""
    if c is None:
        return None, []
    if isinstance(c, bool):
        return c, [flag] if c else ["--no-" + flag[2:]]
    if isinstance(c, float) and not math.isfinite(c):
        raise TuneError(f"{where}: choice {c!r} is not a finite number")
    if isinstance(c, int | float):
        return c, [flag, repr(c) if isinstance(c, float) else str(c)]
    if isinstance(c, str):
        return c, [flag, c]
    if isinstance(c, Sequence) and c and all(_is_number(x) or isinstance(x, str) for x in c):
        # Optuna stores only scalars: a list is the choice labelled by its words.
        words = [repr(x) if isinstance(x, float) else str(x) for x in c]
        return " ".join(words), [flag, *words]
    raise TuneError(
        f"{where}: choice {c!r} is not a number, string, true/false, null or a "
        "non-empty list of numbers"
    )
