"""JSON specs for registry entries: ``{"name": ..., **options}`` checked in one place.

A learning-rate schedule, an augmentation step and similar pluggable pieces are chosen
by a small JSON-serialisable dict, so a run's ``config.json`` records exactly what ran
and a resumed run rebuilds the same thing. The registry entry is a function whose
keyword-only parameters are the spec's options: their defaults fill in what the spec
leaves out, and a parameter without a default is a required option. Every error names
the calling function, the bad key or value, and what would have been valid.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "parse_spec", "spec_options", "is_fraction", "is_nonneg", "is_positive"]

# A check is (predicate, what the value must be) for one option name.
Check = tuple[Callable[[Any], bool], str]


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_fraction(v: Any) -> bool:
    """A real number in [0, 1]."""
    return _is_real(v) and 0 <= v <= 1


def is_nonneg(v: Any) -> bool:
    """A real number >= 0."""
    return _is_real(v) and v >= 0


def is_positive(v: Any) -> bool:
    """A real number > 0."""
    return _is_real(v) and v > 0


def spec_options(entry: Callable[..., Any]) -> dict[str, Any]:
    """The options of a registry entry: its keyword-only parameters and their defaults
    (``inspect.Parameter.empty`` for a required one)."""
    return {
        name: p.default
        for name, p in inspect.signature(entry).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def parse_spec(
    fn: str,
    what: str,
    spec: str | Mapping[str, Any],
    registry: Mapping[str, Callable[..., Any]],
    checks: Mapping[str, Check] | None = None,
) -> dict[str, Any]:
    """Return ``spec`` as a complete dict ``{"name": name, **options}`` (defaults filled).

    ``spec`` is a registry name or a dict with a ``"name"`` key. ``what`` names the kind
    of thing in messages ("schedule", "augmentation"). ``checks`` maps an option name to
    ``(predicate, description)``; a value the predicate rejects is a ``ValueError``.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{fn}: expected a {what} spec as a name or a dict with a 'name' key, got "
            f"{type(spec).__name__}"
        )
    name = spec.get("name")
    if name not in registry:
        raise ValueError(f"{fn}: unknown {what} name {name!r}; expected one of {sorted(registry)}")
    options = spec_options(registry[name])
    unknown = sorted(k for k in spec if k != "name" and k not in options)
    if unknown:
        raise ValueError(
            f"{fn}: {what} {name!r} got unknown key(s) {unknown}; valid keys are "
            f"{['name', *options]}"
        )
    missing = [k for k, d in options.items() if d is inspect.Parameter.empty and k not in spec]
    if missing:
        raise ValueError(f"{fn}: {what} {name!r} is missing the required key(s) {missing}")
    out: dict[str, Any] = {"name": name}
    for key, default in options.items():
        value = spec.get(key, default)
        check = (checks or {}).get(key)
        if check is not None and not check[0](value):
            raise ValueError(
                f"{fn}: {what} {name!r} expected {key!r} to be {check[1]}, got {value!r}"
            )
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
