"""Checks of a :class:`nndl.solver.Solver` state dict, as pure functions.

``Solver.state_dict()`` returns (every array a copy)::

    {"model": {"params", "buffers", "rng"},          # the model's state_dict(), with the
                                                      # parameters training continues from
     "epoch", "iteration", "best_val_acc",            # counters
     "iterations_per_epoch", "batch_size", "num_epochs", "lr_decay", "update_rule",
     "optim_configs": {param: {key: array or JSON scalar}},   # the update rule's state
     "best_params": {param: array},
     "history": {"loss", "train_acc", "val_acc"},     # float64 arrays
     "rng": Generator state, "perm": this epoch's shuffle or None,
     "components": {name: component.state_dict()}}    # data loader, schedule, EMA, ...

The functions here check such a dict (or what a file holds) against a solver's model and
training set before anything changes; every message starts with ``where`` (the caller
and, for a file, its path).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .checks import check_finite
from .io.checkpoint import StoredArray, check_shapes, read_tree
from .legacy import upgrade
from .rng import set_rng_state

__all__ = [
    "STATE_KEYS",
    "optim_state",
    "count",
    "check_optim_configs",
    "check_histories",
    "check_perm",
    "check_best_params",
    "check_outline",
    "check_state",
    "load_objects",
    "read_checkpoint",
]

STATE_KEYS = ("model", "epoch", "iteration", "best_val_acc", "iterations_per_epoch",
              "batch_size", "num_epochs", "lr_decay", "update_rule", "optim_configs",
              "best_params", "history", "rng", "perm", "components")  # fmt: skip
HISTORIES = ("loss", "train_acc", "val_acc")


def _is_scalar(v: Any) -> bool:
    """A JSON scalar an update rule may keep: None, a bool, a string or a finite number."""
    if v is None or isinstance(v, (bool, str)):
        return True
    return isinstance(v, numbers.Real) and math.isfinite(v)


def optim_state(fn: str, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Copies of the update rules' configs: arrays copied, 0-d arrays and NumPy scalars as
    Python numbers; anything else is a TypeError naming the entry."""
    out: dict[str, dict[str, Any]] = {}
    for p, config in configs.items():
        out[p] = {}
        for key, value in config.items():
            if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, np.ndarray):
                value = value.copy()
            elif not (value is None or isinstance(value, (bool, str, numbers.Real))):
                raise TypeError(
                    f"{fn}: optim config entry {p}[{key!r}] is a {type(value).__name__}; "
                    "expected arrays or JSON scalars"
                )
            out[p][key] = value
    return out


def count(where: str, state: Mapping[str, Any], key: str) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{where} holds solver {key} {value!r}; expected an int >= 0")
    return int(value)


def _shape(v: Any) -> tuple[int, ...] | None:
    return tuple(v.shape) if isinstance(v, (np.ndarray, StoredArray)) else None


def check_optim_configs(
    where: str, configs: Any, shapes: Mapping[str, tuple], required: Mapping | None = None
) -> dict:
    """One config per parameter: arrays of the parameter's shape and finite JSON scalars,
    with at least the keys of ``required[param]`` (the solver's own settings)."""
    if not isinstance(configs, Mapping) or set(configs) != set(shapes):
        got = sorted(configs) if isinstance(configs, Mapping) else configs
        raise ValueError(f"{where} holds update-rule settings for {got}; expected {sorted(shapes)}")
    out = {}
    for p, config in configs.items():
        if not isinstance(config, Mapping):
            raise ValueError(f"{where} holds bad update-rule settings for {p}")
        missing = sorted(set((required or {}).get(p, ())) - set(config))
        if missing:
            raise ValueError(f"{where} holds update-rule settings for {p} without {missing}")
        for key, value in config.items():
            shape = _shape(value)
            if shape is None and not _is_scalar(value):
                raise ValueError(f"{where} holds bad update-rule settings for {p}")
            if shape is not None and shape != tuple(shapes[p]):
                raise ValueError(
                    f"{where} holds update-rule state {p}/{key} of shape {shape} but the "
                    f"model's {p} is {tuple(shapes[p])}"
                )
        out[p] = dict(config)
    return out


def check_best_params(where: str, best: Any, shapes: Mapping[str, tuple]) -> dict:
    """The best parameters so far: none yet, or exactly the model's names and shapes."""
    if isinstance(best, Mapping) and not best:
        return {}
    check_shapes(where, "best params", best, shapes)
    for k, v in best.items():
        if v.dtype.kind != "f":
            raise ValueError(f"{where} holds best params {k} of dtype {v.dtype}")
    return dict(best)


def check_histories(where: str, history: Any, epoch: int, iteration: int) -> dict[str, list]:
    """One loss per step; one accuracy per epoch and one at the start (none yet if the
    state was saved before ``train()`` ran)."""
    if not isinstance(history, Mapping):
        raise ValueError(f"{where} holds no history/{HISTORIES[0]}")
    checks = (epoch + 1, 0) if iteration == 0 else (epoch + 1,)
    out = {}
    for key in HISTORIES:
        values = history.get(key)
        lengths = (iteration,) if key == "loss" else checks
        if not isinstance(values, np.ndarray) or values.ndim != 1 or len(values) not in lengths:
            got = _shape(values) or type(values).__name__
            raise ValueError(f"{where} holds {got} history/{key}; expected {lengths[0]} values")
        out[key] = np.asarray(values, dtype=np.float64).tolist()
    return out


def check_perm(where: str, perm: Any, n: int) -> np.ndarray | None:
    """This epoch's shuffle: None, or a permutation of ``range(n)``."""
    if perm is None:
        return None
    ok = isinstance(perm, np.ndarray) and perm.dtype.kind in "iu" and perm.shape == (n,)
    if not ok or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"{where} holds a shuffle that is not one of {n} examples")
    return perm.astype(np.int64)


def check_outline(where: str, outline: Mapping[str, Any], shapes: Mapping[str, tuple], n: int):
    """Refuse a stored checkpoint whose arrays do not fit the solver (before reading any):
    parameters, best parameters, update-rule state and the shuffle."""
    solver, model = outline.get("solver"), outline.get("model")
    if outline.get("kind") != "checkpoint" or not isinstance(solver, Mapping):
        raise ValueError(f"{where} is a saved model, not a Solver checkpoint")
    params = model.get("params") if isinstance(model, Mapping) else None
    check_shapes(where, "params", params, shapes)
    check_best_params(where, solver.get("best_params"), shapes)
    check_optim_configs(where, solver.get("optim_configs"), shapes)
    perm = _shape(solver.get("perm"))
    if perm is not None and perm != (n,):
        raise ValueError(f"{where} holds a shuffle that is not one of {n} examples")


def check_state(where: str, state: Any, solver: Any) -> dict[str, Any]:
    """The solver's own entries of ``state`` checked against ``solver`` (its model's
    parameter shapes, batch size, update rule and settings, training set size and
    components): counters, histories, best parameters, update-rule state, RNG and
    shuffle, ready to apply. The model's and the components' states are checked by their
    own ``load_state_dict``. Reads only the solver's public attributes."""
    shapes = {k: v.shape for k, v in solver.model.params.items()}
    iterations_per_epoch, update_rule = solver.iterations_per_epoch, solver.update_rule_name
    components = solver.components
    if not isinstance(state, Mapping):
        raise ValueError(f"{where} is a {type(state).__name__}, not a solver state")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    ipe = count(where, state, "iterations_per_epoch")
    if ipe != iterations_per_epoch:
        raise ValueError(
            f"{where} was written with {ipe} iterations per epoch (batch_size "
            f"{state.get('batch_size')}) but this solver has {iterations_per_epoch} "
            f"(batch_size {solver.batch_size}); expected the same batch size and training set"
        )
    stored = state["update_rule"]
    if update_rule is not None and stored is not None and update_rule != stored:
        raise ValueError(
            f"{where} was trained with update_rule {stored!r}, this solver uses {update_rule!r}"
        )
    epoch, iteration = count(where, state, "epoch"), count(where, state, "iteration")
    if iteration // ipe != epoch:
        raise ValueError(
            f"{where} holds epoch {epoch} and iteration {iteration}, which disagree at "
            f"{ipe} iterations per epoch"
        )
    best_val_acc = state["best_val_acc"]
    if not isinstance(best_val_acc, numbers.Real) or isinstance(best_val_acc, bool):
        raise ValueError(f"{where} holds best_val_acc {best_val_acc!r}")
    try:
        rng = set_rng_state(None, state["rng"])
    except ValueError as exc:
        raise ValueError(f"{where} holds a bad solver rng: {exc}") from None
    _check_finite_weights(where, state)
    stored_components = state["components"]
    if not isinstance(stored_components, Mapping) or set(stored_components) != set(components):
        got = sorted(stored_components) if isinstance(stored_components, Mapping) else None
        raise ValueError(f"{where} holds components {got}; expected {sorted(components)}")
    return {
        "epoch": epoch,
        "iteration": iteration,
        "best_val_acc": float(best_val_acc),
        "best_params": check_best_params(where, state["best_params"], shapes),
        "optim_configs": check_optim_configs(
            where, state["optim_configs"], shapes, solver.optim_configs
        ),
        "history": check_histories(where, state["history"], epoch, iteration),
        "perm": check_perm(where, state["perm"], len(solver.X_train)),
        "rng": rng,
    }


def _check_finite_weights(where: str, state: Mapping[str, Any]) -> None:
    """A run whose weights (or their best copy, or the update rule's state) hold NaN or inf
    cannot continue: every later step would be NaN too. ``NonFiniteError`` names the array
    and the first bad index (``nndl.models.load_model(..., allow_nonfinite=True)`` reads
    such a model for inspection)."""
    model = state.get("model")
    groups = {
        "parameter": model.get("params") if isinstance(model, Mapping) else None,
        "best parameter": state.get("best_params"),
    }
    configs = state.get("optim_configs")
    for key, config in (configs.items() if isinstance(configs, Mapping) else ()):
        if isinstance(config, Mapping):
            groups[f"update-rule state of {key!r}:"] = config
    for what, arrays in groups.items():
        for name, value in (arrays.items() if isinstance(arrays, Mapping) else ()):
            if isinstance(value, np.ndarray):
                check_finite(where, f"{what} {name!r}", value)


def load_objects(
    where: str, model: Any, model_state: Any, components: Mapping[str, Any], states: Any
) -> None:
    """Restore ``model``, then each of ``components``, through their ``load_state_dict``;
    a refusal undoes what was restored and is a ValueError starting with ``where``."""
    before = model.state_dict()
    try:
        model.load_state_dict(model_state)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    done: list[tuple[Any, Any]] = []
    try:
        for name, component in components.items():
            previous = component.state_dict()
            component.load_state_dict(states[name])
            done.append((component, previous))
    except (TypeError, ValueError) as exc:
        for component, previous in reversed(done):
            component.load_state_dict(previous)
        model.load_state_dict(before)
        raise ValueError(f"{where}: component {name!r}: {exc}") from None


def read_checkpoint(path: Any, shapes: Mapping[str, tuple], n: int) -> tuple[dict, dict | None]:
    """(solver state, extra) of the checkpoint file ``path`` of a solver whose model has
    parameters of ``shapes`` and ``n`` training examples: the stored arrays' shapes are
    checked (:func:`check_outline`) before any is read. Files of nndl 0.1.0 load too."""
    fn = "Solver.load_checkpoint"
    where = f"{fn}: {path}"

    def check(outline: dict[str, Any]) -> None:  # before any array is read
        check_outline(where, upgrade(outline), shapes, n)

    tree = upgrade(read_tree(fn, path, check))
    model = {k: tree["model"].get(k) for k in ("params", "buffers", "rng")}
    extra = tree.get("extra")
    return {**tree["solver"], "model": model}, None if extra is None else dict(extra)
