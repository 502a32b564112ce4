"""What ``nndl train``'s training settings become: the Solver's keywords.

The flags of :data:`nndl.cli.flags.FLAGS` name things a user thinks in (``--schedule
triangular --warmup 0.23``, ``--bn-bias-lr 64``, ``--flip alternating``); this module
turns a run's settings into :class:`nndl.solver.Solver` keywords: the update rule's
config, the learning-rate schedule, the parameter groups, the EMA and the augmentation
pipeline. Settings left at their defaults give exactly the Solver of the classic
default run. It also checks the combinations a single flag's rule cannot see.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..io.jsonfile import JSONLimitError, loads_bounded
from ..models import MODELS
from ..optim import RULE_DEFAULTS, UPDATE_RULES, resolve_param_groups
from ..train.schedules import make_schedule
from .errors import CLIError

__all__ = [
    "WARMUP_KEYS",
    "parse_schedule",
    "parse_param_groups",
    "is_param_groups",
    "is_schedule",
    "with_warmup",
    "check_combination",
    "optim_config",
    "param_groups",
    "ema_spec",
    "augment_spec",
    "solver_kwargs",
]

# The key of each schedule that --warmup sets: the fraction of training spent rising.
WARMUP_KEYS = {"linear": "warmup", "cosine": "warmup", "triangular": "peak_at",
               "one_cycle": "pct_start"}  # fmt: skip


def parse_schedule(text: str) -> dict[str, Any]:
    """argparse type of ``--schedule``: a schedule name or a JSON spec, completed."""
    text = text.strip()
    try:
        spec = loads_bounded(text, "the schedule spec") if text.startswith("{") else text
    except JSONLimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    try:
        return make_schedule(spec).spec
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("make_schedule: ")) from None


def parse_param_groups(text: str) -> list[dict[str, Any]]:
    """argparse type of ``--param-groups``: a JSON list of parameter groups in the
    Solver's form (:func:`nndl.optim.resolve_param_groups`), each group checked."""
    try:
        groups = loads_bounded(text, "the parameter groups")
    except JSONLimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not is_param_groups(groups, explain=True):
        raise argparse.ArgumentTypeError("expected a JSON list of parameter groups")
    return groups


def is_param_groups(value: Any, explain: bool = False) -> bool:
    """A setting's check: None or a non-empty list of valid parameter groups (each
    group's keys and values checked as if its patterns matched a parameter). With
    ``explain`` a bad group raises ``ArgumentTypeError`` saying what is wrong."""
    if value is None:
        return True
    if not isinstance(value, list) or not value:
        return False
    for i, group in enumerate(value):
        try:
            if not isinstance(group, dict):
                raise TypeError(f"group {i} is a {type(group).__name__}, not a dict")
            rule = group.get("update_rule")
            if rule is not None and rule not in UPDATE_RULES:
                raise ValueError(
                    f"unknown update_rule {rule!r}; expected one of {sorted(UPDATE_RULES)}"
                )
            resolve_param_groups(["p"], [{**group, "params": "p"}])
            resolve_param_groups([], [group], strict=False)  # its "params" too
        except (TypeError, ValueError) as exc:
            if explain:
                message = str(exc).removeprefix("resolve_param_groups: ")
                raise argparse.ArgumentTypeError(f"group {i}: {message}") from None
            return False
    return True


def is_schedule(value: Any) -> bool:
    """A setting's check: None (the per-epoch --lr-decay) or a complete schedule spec."""
    if value is None:
        return True
    try:
        return isinstance(value, dict) and make_schedule(value).spec == value
    except (TypeError, ValueError):
        return False


def with_warmup(schedule: dict[str, Any], warmup: float) -> dict[str, Any]:
    """``schedule`` with its warm-up fraction (see :data:`WARMUP_KEYS`) set to ``warmup``."""
    key = WARMUP_KEYS.get(schedule["name"])
    if key is None:
        raise CLIError(
            f"--warmup does not apply to the {schedule['name']!r} schedule; it applies to "
            f"{sorted(WARMUP_KEYS)}"
        )
    return make_schedule({**schedule, key: warmup}).spec


def check_combination(settings: Mapping[str, Any], name: Callable[[str], str]) -> None:
    """Refuse settings that are each valid but do not go together."""
    s = settings
    if s.get("schedule") is not None and s.get("lr_decay", 1.0) != 1.0:
        raise CLIError(
            f"{name('lr_decay')} does not apply with {name('schedule')} (a per-epoch decay is "
            'the schedule {"name": "exponential", "gamma": ...})'
        )
    if s.get("warmup") is not None and s.get("schedule") is None:
        raise CLIError(f"{name('warmup')} needs {name('schedule')}")
    for key in ("lookahead", "ema_power"):
        if s.get(key) and not s.get("ema"):  # --ema 0 keeps no average
            raise CLIError(f"{name(key)} needs {name('ema')} DECAY above 0")
    if s.get("recompute") and not hasattr(MODELS.get(s.get("model")), "recompute"):
        networks = sorted(k for k, m in MODELS.items() if hasattr(m, "recompute"))
        raise CLIError(f"{name('recompute')} applies to {networks}, not {s.get('model')}")
    if s.get("test_at_end") and s.get("num_test") == 0:
        raise CLIError(f"{name('test_at_end')} needs test images ({name('num_test')} is 0)")
    rule = s.get("update_rule")
    if s.get("momentum") is not None and "momentum" not in RULE_DEFAULTS.get(rule, {}):
        raise CLIError(
            f"{name('momentum')} does not apply to update rule {rule}; rules with momentum: "
            f"{sorted(r for r, d in RULE_DEFAULTS.items() if 'momentum' in d)}"
        )


def _weight_decay(settings: Mapping[str, Any]) -> float:
    """--weight-decay, or the update rule's own default (sgdw, adamw; 0 for the rest)."""
    wd = settings.get("weight_decay")
    if wd is None:
        wd = RULE_DEFAULTS.get(settings["update_rule"], {}).get("weight_decay", 0.0)
    return wd


def optim_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The update rule's config: the learning rate and the flags that were given."""
    config: dict[str, Any] = {"learning_rate": settings["lr"]}
    for key in ("momentum", "weight_decay"):
        if settings.get(key) is not None:
            config[key] = settings[key]
    if settings.get("coupled_decay"):
        config["coupled_decay"] = True
    return config


def param_groups(settings: Mapping[str, Any], specs: Mapping[str, Any]) -> list | None:
    """Parameter groups from the model's parameter specs (``role`` and ``decay``):
    without ``--bias-decay`` no weight decay on biases and batch-norm parameters;
    ``--bn-bias-lr M`` multiplies the batch-norm shifts' learning rate by M and divides
    their weight decay by M (airbench94's bias scaler: the same decay per step);
    ``--param-groups`` come after these, so where they name a setting they win."""
    groups = []
    wd = _weight_decay(settings)
    no_decay = [k for k, s in specs.items() if not s.decay]
    if wd and not settings.get("bias_decay") and no_decay:
        groups.append({"name": "no decay", "params": no_decay, "weight_decay": 0.0})
    shifts = [k for k, s in specs.items() if s.role == "norm_shift"]
    mult = settings.get("bn_bias_lr")
    if mult is not None and shifts:
        group = {"name": "bn biases", "params": shifts, "lr_mult": float(mult)}
        if settings.get("bias_decay"):
            group["weight_decay"] = wd / mult
        groups.append(group)
    groups += settings.get("param_groups") or []  # --param-groups last: they win
    return groups or None


def ema_spec(settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Solver's ``ema`` dict, or None without ``--ema`` or with ``--ema 0`` (an
    average of decay 0 is the weights themselves, so none is kept: the same run). The
    decay's warm-up is on for a constant decay and off when ``--ema-power`` schedules it."""
    if not settings.get("ema"):
        return None
    power = float(settings.get("ema_power") or 0.0)
    return {"decay": settings["ema"], "every": settings.get("ema_every") or 1,
            "lookahead": bool(settings.get("lookahead")), "power": power,
            "warmup": power == 0}  # fmt: skip


def augment_spec(settings: Mapping[str, Any]) -> list | None:
    """The augmentation pipeline of ``--crop-pad``, ``--flip`` and ``--cutout``, or None
    (then the Solver shuffles as SPEC's does)."""
    steps: list[Any] = []
    if settings.get("crop_pad"):
        steps.append({"name": "random_crop", "pad": settings["crop_pad"],
                      "mode": settings.get("crop_mode") or "reflect"})  # fmt: skip
    flip = settings.get("flip") or "none"
    if flip != "none":
        steps.append("random_flip" if flip == "random" else "alternating_flip")
    if settings.get("cutout"):
        steps.append({"name": "cutout", "size": settings["cutout"]})
    return steps or None


def solver_kwargs(settings: Mapping[str, Any], specs: Mapping[str, Any]) -> dict[str, Any]:
    """The Solver's keywords for ``settings`` and a model with parameter ``specs``."""
    return {
        "update_rule": settings["update_rule"],
        "optim_config": optim_config(settings),
        "lr_decay": settings["lr_decay"],
        "schedule": settings.get("schedule"),
        "param_groups": param_groups(settings, specs),
        "ema": ema_spec(settings),
        "augment": augment_spec(settings),
        "batch_size": settings["batch_size"],
        "num_epochs": settings["epochs"],
        "seed": settings["seed"],
    }
