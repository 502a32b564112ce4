"""Saving models and training state as ``.npz`` files: plain arrays plus one JSON string.

Nothing is pickled: every file loads with ``np.load(path, allow_pickle=False)``. Files
are written atomically (a temporary file in the same folder, fsync, ``os.replace``), so
a crash or a full disk mid-write leaves any previous file intact.

Layout: ``meta`` is a 0-d unicode array holding JSON (``format``, ``kind``, ``name``,
``config``, ``extra``, ``model_rng`` and, in solver checkpoints, ``solver``);
``params/<name>`` the parameters; ``state/<name>`` running statistics; solver
checkpoints add ``best/<name>``, ``optim/<name>/<key>`` (update-rule state arrays),
``history/{loss,train_acc,val_acc}`` and ``perm`` (the current epoch's shuffle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_open

if TYPE_CHECKING:
    from .model_base import Model
    from .solver import Solver

FORMAT = "nndl"
VERSION = 1


def _npz_path(path: str | os.PathLike) -> Path:
    # Like np.savez: a name without the suffix gets ".npz".
    p = Path(path)
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write ``arrays`` to ``path`` (``.npz`` appended if missing) atomically; return it.

    Object arrays are refused (they would need pickle to load).
    """
    path = _npz_path(path)
    checked = {}
    for key, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.hasobject:
            raise TypeError(f"atomic_savez: {key!r} is an object array; expected plain dtypes")
        checked[key] = a
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez(f, **checked)
    return path


def _json_array(obj: Any) -> np.ndarray:
    return np.array(json.dumps(obj))


def _read_meta(fn: str, f: Any, path: Any) -> dict[str, Any]:
    if "meta" not in f.files:
        raise ValueError(f"{fn}: {path} is not an nndl file (no 'meta' entry)")
    meta = json.loads(str(f["meta"][()]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{fn}: {path} is not an nndl file (format {meta.get('format')!r})")
    return meta


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-serialisable state of a Generator's bit generator."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> np.random.Generator:
    """Return ``rng`` with ``state`` restored (a new Generator if the bit generator differs)."""
    if type(rng.bit_generator).__name__ != state["bit_generator"]:
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return rng


# --- models ---------------------------------------------------------------------------


def _model_entries(model: Model, params: dict[str, np.ndarray] | None = None) -> dict:
    params = model.params if params is None else params
    arrays = {f"params/{k}": v for k, v in params.items()}
    state = model.state_arrays() if hasattr(model, "state_arrays") else {}
    arrays.update({f"state/{k}": v for k, v in state.items()})
    return arrays


def _model_meta(model: Model, kind: str, extra: dict | None) -> dict[str, Any]:
    rng = getattr(model, "rng", None)
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "name": getattr(model, "name", type(model).__name__),
        "config": getattr(model, "config", {}),
        "extra": extra,
        "model_rng": rng_state(rng) if rng is not None else None,
    }


def _group(f: Any, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: f[k] for k in f.files if k.startswith(prefix)}


def _check_same_params(fn: str, path: Any, got: dict, expected: dict) -> None:
    if set(got) != set(expected):
        raise ValueError(
            f"{fn}: {path} holds params {sorted(got)} but the model has {sorted(expected)}"
        )
    for k, v in got.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"{fn}: {path} holds {k} of shape {v.shape} but the model's is {expected[k].shape}"
            )


def _restore_model(fn: str, path: Any, model: Model, f: Any, meta: dict) -> None:
    params = _group(f, "params/")
    _check_same_params(fn, path, params, model.params)
    dtype = getattr(model, "dtype", None)
    model.params = {k: np.array(v, dtype=dtype or v.dtype) for k, v in params.items()}
    state = _group(f, "state/")
    if hasattr(model, "load_state_arrays"):
        model.load_state_arrays(state)
    if meta.get("model_rng") is not None and getattr(model, "rng", None) is not None:
        model.rng = set_rng_state(model.rng, meta["model_rng"])


def save_model(path: str | os.PathLike, model: Model, extra: dict | None = None) -> Path:
    """Save ``model`` (params, running statistics, RNG state, name and config) and the
    JSON-serialisable ``extra`` (for example class names or normalisation) to ``path``."""
    meta = _model_meta(model, "model", extra)
    return atomic_savez(path, meta=_json_array(meta), **_model_entries(model))


def load_model(path: str | os.PathLike) -> tuple[Model, dict | None]:
    """Rebuild a model saved by :func:`save_model` (or a Solver checkpoint, which gives the
    parameters training would continue from); returns ``(model, extra)``."""
    from .models import build_model

    fn = "load_model"
    with np.load(path, allow_pickle=False) as f:
        meta = _read_meta(fn, f, path)
        model = build_model(meta["name"], **meta["config"])
        _restore_model(fn, path, model, f, meta)
    return model, meta.get("extra")


# --- solver checkpoints ---------------------------------------------------------------


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def save_solver_checkpoint(path: str | os.PathLike, solver: Solver, extra: dict | None = None):
    """Everything :func:`load_solver_checkpoint` needs to continue ``solver``'s run."""
    fn = "Solver.save_checkpoint"
    arrays = _model_entries(solver.model, solver.training_params())
    optim_scalars: dict[str, dict[str, Any]] = {}
    for p, config in solver.optim_configs.items():
        optim_scalars[p] = {}
        for key, value in config.items():
            if isinstance(value, np.ndarray) and value.ndim == 0:
                value = value.item()
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                arrays[f"optim/{p}/{key}"] = value
            elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
                optim_scalars[p][key] = _scalar(value)
            else:
                raise TypeError(
                    f"{fn}: optim config entry {p}[{key!r}] is a {type(value).__name__}; "
                    "expected arrays or JSON scalars"
                )
    arrays.update({f"best/{k}": v for k, v in solver.best_params.items()})
    arrays["history/loss"] = np.asarray(solver.loss_history, dtype=np.float64)
    arrays["history/train_acc"] = np.asarray(solver.train_acc_history, dtype=np.float64)
    arrays["history/val_acc"] = np.asarray(solver.val_acc_history, dtype=np.float64)
    if solver._perm is not None:
        arrays["perm"] = solver._perm
    rule = solver.update_rule_name
    meta = _model_meta(solver.model, "checkpoint", extra)
    meta["solver"] = {
        "epoch": solver.epoch,
        "iteration": solver.iteration,
        "best_val_acc": solver.best_val_acc,
        "iterations_per_epoch": solver.iterations_per_epoch,
        "batch_size": solver.batch_size,
        "num_epochs": solver.num_epochs,
        "lr_decay": solver.lr_decay,
        "update_rule": rule,
        "optim_scalars": optim_scalars,
        "rng": rng_state(solver.rng),
    }
    return atomic_savez(path, meta=_json_array(meta), **arrays)


def load_solver_checkpoint(path: str | os.PathLike, solver: Solver) -> dict | None:
    """Restore a checkpoint into ``solver`` and its model; returns the checkpoint's extra.

    The solver must train the same architecture with the same batch size and training
    set size (else ``ValueError``); its ``num_epochs`` may differ, to train for longer.
    """
    fn = "Solver.load_checkpoint"
    with np.load(path, allow_pickle=False) as f:
        meta = _read_meta(fn, f, path)
        if meta.get("kind") != "checkpoint" or "solver" not in meta:
            raise ValueError(f"{fn}: {path} is a saved model, not a Solver checkpoint")
        s = meta["solver"]
        if s["iterations_per_epoch"] != solver.iterations_per_epoch:
            raise ValueError(
                f"{fn}: {path} was written with {s['iterations_per_epoch']} iterations per "
                f"epoch (batch_size {s['batch_size']}) but this solver has "
                f"{solver.iterations_per_epoch} (batch_size {solver.batch_size}); expected "
                "the same batch size and training set"
            )
        rule = solver.update_rule_name
        if rule is not None and s["update_rule"] is not None and rule != s["update_rule"]:
            raise ValueError(
                f"{fn}: {path} was trained with update_rule {s['update_rule']!r}, this "
                f"solver uses {rule!r}"
            )
        best = _group(f, "best/")
        if best:
            _check_same_params(fn, path, best, solver.model.params)
        _restore_model(fn, path, solver.model, f, meta)
        optim_configs = {}
        for p in solver.model.params:
            config = dict(s["optim_scalars"].get(p, {}))
            config.update({k: np.array(v) for k, v in _group(f, f"optim/{p}/").items()})
            optim_configs[p] = config
        solver.optim_configs = optim_configs
        solver.best_params = {k: np.array(v) for k, v in best.items()}
        solver.loss_history = f["history/loss"].tolist()
        solver.train_acc_history = f["history/train_acc"].tolist()
        solver.val_acc_history = f["history/val_acc"].tolist()
        solver._perm = np.array(f["perm"]) if "perm" in f.files else None
        solver.epoch = int(s["epoch"])
        solver.iteration = int(s["iteration"])
        solver.best_val_acc = float(s["best_val_acc"])
        solver.rng = set_rng_state(solver.rng, s["rng"])
        solver._last_params = None
    return meta.get("extra")
