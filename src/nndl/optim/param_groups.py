"""Per-parameter training settings from glob-pattern parameter groups:
:func:`resolve_param_groups` (imported from :mod:`nndl.optim`, its public home).

A group names parameters by glob patterns and sets some of a learning-rate multiplier,
a weight decay, a frozen flag, its own update rule and that rule's settings, and how many
epochs they train for; the Solver
applies the result to each parameter (its rule and its update-rule config).
"""

from __future__ import annotations

import fnmatch
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..validation import is_bool

__all__ = ["PARAM_GROUP_KEYS", "resolve_param_groups"]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# The keys a parameter group may hold. Every other key is an error that lists these.
PARAM_GROUP_KEYS: dict[str, str] = {
    "params": "a glob pattern or a list of them, matched against parameter names",
    "name": "a label for messages",
    "lr_mult": "a learning-rate multiplier >= 0",
    "weight_decay": "a decoupled weight decay >= 0 (instead of the update rule's)",
    "frozen": "True to leave the parameters unchanged by training",
    "update_rule": "the name of the update rule for these parameters (instead of the Solver's)",
    "optim_config": "that rule's settings for these parameters (a dict, over the Solver's)",
    "train_epochs": "train these parameters for the first N epochs only (N > 0; a schedule "
    "runs over those epochs for them), then leave them unchanged",
}
_SETTING_DEFAULTS: dict[str, Any] = {
    "lr_mult": 1.0, "weight_decay": None, "frozen": False, "update_rule": None,
    "optim_config": None, "train_epochs": None,
}  # fmt: skip
_SETTING_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr_mult": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "frozen": (is_bool, "a bool"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "update_rule": (lambda v: isinstance(v, str) and bool(v), "a rule name (a string)"),
    "optim_config": (lambda v: isinstance(v, Mapping), "a dict of the rule's settings"),
    "train_epochs": (lambda v: _is_real(v) and v > 0 and v < float("inf"), "a number > 0"),
}


def _setting(key: str, value: Any) -> Any:
    if key == "frozen":
        return bool(value)
    if key == "update_rule":
        return value
    if key == "optim_config":
        return dict(value)
    return float(value)


def _group_patterns(fn: str, where: str, group: Mapping[str, Any]) -> list[str]:
    if "params" not in group:
        raise ValueError(f"{fn}: {where} has no 'params' (the glob patterns it applies to)")
    pats = group["params"]
    pats = [pats] if isinstance(pats, str) else pats
    if (
        not isinstance(pats, (list, tuple))
        or not pats
        or not all(isinstance(p, str) and p for p in pats)
    ):
        raise ValueError(
            f"{fn}: expected {where}['params'] to be a glob pattern or a non-empty list of "
            f"them, got {group['params']!r}"
        )
    return list(pats)


def _check_group(fn: str, i: int, group: Any) -> tuple[str, list[str]]:
    """Validate ``groups[i]``; return how messages name it and its patterns."""
    if not isinstance(group, Mapping):
        raise TypeError(f"{fn}: expected groups[{i}] to be a dict, got {type(group).__name__}")
    where = f"groups[{i}]" + (f" ({group['name']!r})" if isinstance(group.get("name"), str) else "")
    unknown = sorted(k for k in group if k not in PARAM_GROUP_KEYS)
    if unknown:
        raise ValueError(
            f"{fn}: {where} has unknown key(s) {unknown}; valid keys are {list(PARAM_GROUP_KEYS)}"
        )
    for key, (ok, what) in _SETTING_CHECKS.items():
        if key in group and not ok(group[key]):
            raise ValueError(f"{fn}: expected {where}['{key}'] to be {what}, got {group[key]!r}")
    return where, _group_patterns(fn, where, group)


def resolve_param_groups(
    names: Iterable[str] | Mapping[str, Any],
    groups: Sequence[Mapping[str, Any]] | None = None,
    *,
    strict: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per-parameter training settings from a list of parameter groups.

    Each group names its parameters by glob patterns (``fnmatch``, case-sensitive, over
    the full name: ``"beta*"``, ``"*.b"``, ``"whiten.*"``) in ``"params"`` and sets some
    of ``lr_mult``, ``weight_decay``, ``frozen``, ``update_rule``, ``optim_config`` and
    ``train_epochs`` (see :data:`PARAM_GROUP_KEYS`).

    Precedence: groups apply in list order and each sets only the keys it names, so for
    every key the *last* group that matches a parameter and names that key wins. Write
    general groups first, exceptions after::

        [{"params": ["gamma*", "beta*", "b*"], "weight_decay": 0.0},
         {"params": "beta*", "lr_mult": 64.0},
         {"params": "gamma*", "frozen": True}]

    Returns ``{name: {"lr_mult": float, "weight_decay": float | None, "frozen": bool,
    "update_rule": str | None, "optim_config": dict | None, "train_epochs": float |
    None}}`` for every name, in order; unmatched keys keep the defaults 1.0, None (the
    update rule's own decay), False, None (the Solver's rule), None (the Solver's
    settings) and None (all of training). An ``optim_config`` replaces an
    earlier group's as a whole (dicts are not merged across groups). With ``strict`` a
    pattern that matches no parameter is an error (it is almost always a typo). ``names``
    may be a dict such as ``model.params``. The result depends only on the arguments, so
    it can be recomputed from a run's config on resume.
    """
    fn = "resolve_param_groups"
    names = list(names.keys() if isinstance(names, Mapping) else names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{fn}: expected parameter names as strings, got {names!r}")
    if groups is not None and not isinstance(groups, (list, tuple)):
        raise TypeError(f"{fn}: expected groups to be a list of dicts, got {type(groups).__name__}")
    settings = {n: dict(_SETTING_DEFAULTS) for n in names}
    for i, group in enumerate(groups or ()):
        where, patterns = _check_group(fn, i, group)
        matched: set[str] = set()
        for pat in patterns:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
            if strict and not hits:
                shown = names if len(names) <= 20 else names[:20] + ["..."]
                raise ValueError(
                    f"{fn}: {where} pattern {pat!r} matches no parameter; the parameters "
                    f"are {shown} (pass strict=False to allow this)"
                )
            matched.update(hits)
        for n in matched:
            for key in _SETTING_DEFAULTS:
                if key in group:
                    settings[n][key] = _setting(key, group[key])
    return settings
