"""The Solver's keywords, and what its training extras resolve to, as small pieces.

:class:`nndl.solver.Solver` takes, besides SPEC's keywords (:data:`DEFAULTS`, checked
by :func:`check_options`), four extras, all off by default:

- ``schedule``: a spec of :mod:`nndl.schedules` (``"triangular"``, ``{"name":
  "cosine", "warmup": 0.1}``). Before update ``t`` (0-based) of ``T`` every parameter's
  ``learning_rate`` is set to ``base * lr_mult * schedule(t, T, iterations_per_epoch)``,
  with ``base`` the ``optim_config``'s rate (or the named rule's default): a pure
  function of the counter, so a resumed run gets exactly the same rates. ``T`` is the
  run's ``num_iterations``: training a resumed run for longer stretches the schedule.
  SPEC's ``lr_decay`` is the schedule ``{"name": "exponential", "gamma": lr_decay}``
  and keeps its classic form (each rate multiplied at each epoch end); the two exclude
  each other.
- ``param_groups``: :func:`nndl.optim.resolve_param_groups` groups. ``lr_mult``
  scales a parameter's rate (with or without a schedule), ``weight_decay`` replaces the
  rule's, ``frozen`` skips the parameter: its rule is never called, so neither a
  gradient, momentum nor weight decay moves it. Parameters the model marks untrainable
  (``param_specs[k].trainable``) are frozen too. ``update_rule`` gives a group's
  parameters a rule of their own (a name in :data:`nndl.optim.UPDATE_RULES`), which
  starts from the group's ``optim_config`` alone; without it, a group's ``optim_config``
  goes over the Solver's. ``train_epochs: N`` trains a group for the first N epochs only
  (round(N * iterations_per_epoch) updates, over which its schedule runs), then leaves
  it unchanged. Checkpoints record each parameter's rule and state.
- ``ema``: a dict of :data:`EMA_DEFAULTS`' keys; an :class:`nndl.ema.EMA` (component
  ``"ema"``) folds the weights in after every step, and every accuracy check (and so
  ``best_params``) runs with the averages swapped in (:func:`ema_applied`). With
  ``lookahead`` the average is also written back into the weights every ``every``
  steps and, after the last iteration of the run, for good (airbench94's final copy).
- ``augment``: a pipeline of :mod:`nndl.augment`; minibatches then come from a
  :class:`nndl.train.loader.BatchLoader` (component ``"loader"``, seeded by one draw
  from the solver's Generator) that prepares the next batches in a background thread.
  Its order and augmentation are functions of (seed, epoch, batch), and it is moved to
  the solver's iteration whenever ``train()`` starts, so a resumed run sees exactly the
  batches of an uninterrupted one. Without ``augment`` the solver shuffles as SPEC says
  (one permutation per epoch from its own Generator), bit for bit as before.

This module holds :class:`ParamPlan` (per parameter: frozen or not, its starting
config, its learning rate at any iteration), :func:`step_loss` and the EMA helpers.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..optim import RULE_DEFAULTS, UPDATE_RULES, resolve_param_groups, state_shapes
from ..validation import check_finite, check_labels, is_bool
from .ema import EMA
from .schedules import Schedule

__all__ = [
    "DEFAULTS",
    "DATA_KEYS",
    "positive_int",
    "check_options",
    "check_data",
    "ParamPlan",
    "step_loss",
    "EMA_DEFAULTS",
    "check_ema_spec",
    "make_ema",
    "ema_decay",
    "ema_target",
    "ema_step",
    "ema_applied",
]

DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")

# Keyword arguments and their defaults: the SPEC's, then this library's extras.
DEFAULTS: dict[str, Any] = {
    "update_rule": "sgd",
    "optim_config": None,
    "lr_decay": 1.0,
    "batch_size": 100,
    "num_epochs": 10,
    "num_train_samples": 1000,
    "num_val_samples": None,
    "checkpoint_name": None,
    "print_every": 10,
    "verbose": True,
    "callbacks": None,
    "seed": None,
    "schedule": None,
    "param_groups": None,
    "ema": None,
    "augment": None,
}


def positive_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Solver: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def check_options(model: Any, data: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict:
    """The Solver's keywords checked and completed (SPEC's checks and messages)."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"Solver: unknown keyword argument(s) {unknown}; expected some of {list(DEFAULTS)}"
        )
    opts = {**DEFAULTS, **kwargs}
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise ValueError(f"Solver: data is missing {missing}; expected keys {list(DATA_KEYS)}")
    for split in ("train", "val"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if len(X) != len(y):
            raise ValueError(
                f"Solver: X_{split} has {len(X)} rows but y_{split} has {len(y)} labels"
            )
    if len(data["X_train"]) == 0:
        raise ValueError("Solver: expected a non-empty training set, got 0 examples")
    check_data(model, data)
    rule = opts["update_rule"]
    if not callable(rule) and rule not in UPDATE_RULES:
        raise ValueError(
            f"Solver: unknown update_rule {rule!r}; expected one of {sorted(UPDATE_RULES)} "
            "or a callable"
        )
    if not isinstance(opts["optim_config"] or {}, Mapping):
        raise ValueError(
            f"Solver: expected optim_config to be a dict, got {opts['optim_config']!r}"
        )
    lr_decay = opts["lr_decay"]
    opts["lr_decay"] = float(lr_decay)
    if not opts["lr_decay"] > 0:
        raise ValueError(f"Solver: expected lr_decay > 0, got {lr_decay!r}")
    opts["batch_size"] = positive_int("batch_size", opts["batch_size"])
    opts["num_epochs"] = positive_int("num_epochs", opts["num_epochs"], minimum=0)
    for key in ("num_train_samples", "num_val_samples"):
        opts[key] = positive_int(key, opts[key], allow_none=True)
    opts["print_every"] = positive_int("print_every", opts["print_every"])
    return opts


def check_data(model: Any, data: Mapping[str, Any]) -> None:
    """Refuse a NaN or infinity in ``X_train`` / ``X_val`` (one would train silently into
    NaN weights and running statistics), naming the array and the first bad index, and
    labels that are not one class index per row in ``[0, num_classes)`` (the model's
    ``config['num_classes']`` where it has one)."""
    config = getattr(model, "config", None)
    classes = config.get("num_classes") if isinstance(config, Mapping) else None
    classes = classes if isinstance(classes, int) and not isinstance(classes, bool) else None
    for split in ("train", "val"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        check_finite("Solver", f"data['X_{split}']", X)
        check_labels("Solver", np.asarray(y), len(X), classes, name=f"data['y_{split}']",
                     x=f"data['X_{split}']")  # fmt: skip


class ParamPlan:
    """Per-parameter training settings of one Solver.

    ``frozen``: the names training leaves unchanged (a group's ``frozen``, or a model
    parameter whose spec says ``trainable=False``): their update rule is never called.
    ``rule_name[name]`` and ``rule[name]``: the parameter's update rule (its group's
    ``update_rule``, else the Solver's; the name is None for a Solver rule given as a
    callable). ``lr_mult`` and ``weight_decay``: the groups' settings (``weight_decay``
    None: the update rule's own). ``base_lr[name]``: the learning rate before any
    schedule, the parameter's config's (or its named rule's default) times the group's
    multiplier.
    """

    def __init__(
        self,
        model: Any,
        optim_config: Mapping[str, Any],
        rule_name: str | None,
        groups: Any = None,
        schedule: Schedule | None = None,
        rule: Any = None,
    ) -> None:
        fn = "Solver"
        try:
            settings = resolve_param_groups(model.params, groups)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{fn}: param_groups: {exc}") from None
        specs = getattr(model, "param_specs", None) or {}
        model_frozen = {k for k, s in specs.items() if not getattr(s, "trainable", True)}
        self.frozen = {k for k, s in settings.items() if s["frozen"]} | model_frozen
        self.lr_mult = {k: s["lr_mult"] for k, s in settings.items()}
        self.weight_decay = {k: s["weight_decay"] for k, s in settings.items()}
        self.train_epochs = {k: s["train_epochs"] for k, s in settings.items()}
        self.schedule = schedule
        self.rule_name: dict[str, str | None] = {}
        self.rule: dict[str, Any] = {}
        self.own_config: dict[str, dict[str, Any]] = {}
        for k, s in settings.items():
            name = s["update_rule"]
            if name is not None and name not in UPDATE_RULES:
                raise ValueError(
                    f"{fn}: param_groups: unknown update_rule {name!r} for {k}; expected "
                    f"one of {sorted(UPDATE_RULES)}"
                )
            own = name is not None and name != rule_name
            self.rule_name[k] = name if name is not None else rule_name
            self.rule[k] = UPDATE_RULES[name] if name is not None else rule
            # A parameter with a rule of its own starts from its group's settings alone;
            # otherwise the group's settings go over the Solver's.
            group = dict(s["optim_config"] or {})
            self.own_config[k] = group if own else {**optim_config, **group}
        scaled = schedule is not None or any(m != 1.0 for m in self.lr_mult.values())
        self.base_lr: dict[str, float | None] = {}
        for k, config in self.own_config.items():
            lr = config.get("learning_rate")
            if lr is None and self.rule_name[k] is not None:
                lr = RULE_DEFAULTS.get(self.rule_name[k], {}).get("learning_rate")
            if lr is None and scaled:
                raise ValueError(
                    f"{fn}: a schedule or an lr_mult needs a base learning rate; give "
                    "optim_config={'learning_rate': ...}"
                )
            self.base_lr[k] = None if lr is None else lr * self.lr_mult[k]
        self.scaled = scaled

    def initial_configs(self, optim_config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Each parameter's update-rule config at the start of a run: a copy of its
        settings (``optim_config``, with its group's over it or instead of it when the
        group names its own rule; ``inplace``: the Solver owns the parameters), with its
        group's learning rate and weight decay. Without groups these are SPEC's configs."""
        configs = {}
        for name, base in self.base_lr.items():
            config = {"inplace": True, **self.own_config[name]}
            if self.scaled and base is not None:
                config["learning_rate"] = base
            if self.weight_decay[name] is not None:
                config["weight_decay"] = self.weight_decay[name]
            configs[name] = config
        return configs

    def state_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict]:
        """``{param: {state key: shape}}``: what each parameter's rule declares
        (:data:`nndl.optim.RULE_STATE`) for parameters of ``shapes``."""
        return {k: state_shapes(self.rule_name.get(k), s) for k, s in shapes.items()}

    def multiplier(self, iteration: int, total: int, iterations_per_epoch: int) -> float:
        """The schedule's multiplier for update ``iteration`` (0-based) of ``total``."""
        if self.schedule is None:
            return 1.0
        return self.schedule(iteration, max(total, 1), iterations_per_epoch)

    def learning_rate(self, name: str, multiplier: float) -> float:
        """Parameter ``name``'s learning rate for a step with the schedule's ``multiplier``."""
        return self.base_lr[name] * multiplier

    def updates(
        self, iteration: int, factor: float, iterations_per_epoch: int
    ) -> Iterator[tuple[str, float]]:
        """``(name, multiplier)`` for each parameter that update ``iteration`` changes:
        not frozen, and within its group's ``train_epochs`` (over which its schedule then
        runs, as airbench94_muon decays its whitening bias to 0 over 3 epochs); the others
        take ``factor``, the run's multiplier for this update (:meth:`multiplier`)."""
        for name, epochs in self.train_epochs.items():
            if name in self.frozen:
                continue
            if epochs is None:
                yield name, factor
                continue
            horizon = max(round(epochs * iterations_per_epoch), 1)
            if iteration < horizon:
                yield name, self.multiplier(iteration, horizon, iterations_per_epoch)


def step_loss(model: Any, X: np.ndarray, y: np.ndarray, updated: set[str]) -> tuple[Any, dict]:
    """The model's ``(loss, grads)`` for a step that updates only ``updated``, telling a
    model that can skip gradients (``skip_grads``: :class:`nndl.network.Network`) which
    ones nobody will read, so that it need not compute them."""
    skip = getattr(model, "skip_grads", None) or (lambda names: None)
    skip(model.params.keys() - updated)
    try:
        return model.loss(X, y)
    finally:
        skip(())


# --- the EMA of the weights -------------------------------------------------------------

EMA_DEFAULTS: dict[str, Any] = {
    "decay": 0.999,
    "every": 1,
    "warmup": True,
    "lookahead": False,
    "power": 0.0,
    "buffers": True,
}
"""The EMA settings and their defaults: ``decay`` per average, an average every
``every`` steps, TensorFlow's ``warmup`` of the decay, ``lookahead`` (write the average
back into the weights, airbench94), ``power`` (the decay of the average after step t of
T is ``decay * (t / T) ** power``: 0 keeps it constant, airbench94 uses 3), and
``buffers`` (average the batch-norm running statistics too)."""

_EMA_CHECKS = {
    "decay": (lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "every": (lambda v: _int(v) and v >= 1, "an int >= 1"),
    "warmup": (is_bool, "true or false"),
    "lookahead": (is_bool, "true or false"),
    "power": (lambda v: _real(v) and v >= 0, "a number >= 0"),
    "buffers": (is_bool, "true or false"),
}


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_ema_spec(fn: str, spec: Any) -> dict[str, Any] | None:
    """``spec`` (None, or a dict with some of :data:`EMA_DEFAULTS`' keys) completed."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ValueError(f"{fn}: expected ema to be a dict such as {{'decay': 0.99}}, got {spec!r}")
    unknown = sorted(k for k in spec if k not in EMA_DEFAULTS)
    if unknown:
        raise ValueError(
            f"{fn}: ema has unknown key(s) {unknown}; valid keys are {list(EMA_DEFAULTS)}"
        )
    out = {**EMA_DEFAULTS, **spec}
    for key, (ok, what) in _EMA_CHECKS.items():
        if not ok(out[key]):
            raise ValueError(f"{fn}: expected ema['{key}'] to be {what}, got {out[key]!r}")
    out["decay"], out["power"] = float(out["decay"]), float(out["power"])
    out["every"] = int(out["every"])
    return out


def make_ema(spec: Mapping[str, Any]) -> EMA:
    """The :class:`nndl.ema.EMA` of a checked spec."""
    return EMA(spec["decay"], every=spec["every"], warmup=spec["warmup"],
               lookahead=spec["lookahead"])  # fmt: skip


def ema_decay(spec: Mapping[str, Any], t: int, total: int) -> float:
    """The decay of an average taken after step ``t`` (1-based) of ``total``."""
    if spec["power"] == 0:
        return spec["decay"]
    return spec["decay"] * (min(t, total) / max(total, 1)) ** spec["power"]


def ema_target(model: Any, buffers: bool = True) -> dict[str, np.ndarray]:
    """The model's live arrays an EMA averages: ``params`` and, with ``buffers``, its
    running statistics (``state_arrays()``), under their own names."""
    target = dict(model.params)
    if buffers:
        extra = model.state_arrays() if hasattr(model, "state_arrays") else {}
        clash = sorted(set(extra) & set(target))
        if clash:
            raise ValueError(f"Solver: ema: parameters and buffers share the names {clash}")
        target.update(extra)
    return target


def ema_step(ema: EMA, spec: Mapping[str, Any], model: Any, t: int, total: int) -> None:
    """After update ``t`` (1-based) of ``total``: fold the model's arrays into ``ema``
    (every ``spec['every']`` calls); a lookahead's last step keeps the average for good
    (airbench94's final copy)."""
    target = ema_target(model, spec["buffers"])
    ema.update(target, ema_decay(spec, t, total))
    if ema.lookahead and t == total and ema.num_updates:
        ema.copy_to(target)


def ema_applied(ema: EMA | None, spec: Mapping[str, Any] | None, model: Any) -> Any:
    """A context in which ``model`` holds ``ema``'s averages (a no-op without one)."""
    if ema is None or spec is None or not ema.num_updates:
        return contextlib.nullcontext()
    return ema.swapped(ema_target(model, spec["buffers"]))
