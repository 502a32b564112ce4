"""Saving models and training state as ``.npz`` files: plain arrays plus one JSON string.

Nothing is pickled: every file loads with ``np.load(path, allow_pickle=False)``. Files
are written atomically (a temporary file in the same folder, fsync, ``os.replace``), so
a crash or a full disk mid-write leaves any previous file intact.

Layout: ``meta`` is a 0-d unicode array holding JSON (``format``, ``kind``, ``name``,
``config``, ``extra``, ``model_rng`` and, in solver checkpoints, ``solver``);
``params/<name>`` the parameters; ``state/<name>`` running statistics; solver
checkpoints add ``best/<name>``, ``optim/<name>/<key>`` (update-rule state arrays),
``history/{loss,train_acc,val_acc}`` and ``perm`` (the current epoch's shuffle).

Reading trusts nothing in the file (:class:`NpzReader`): every array's header is read
and checked (plain dtype, its size matching the zip entry's, all of them together at
most :data:`MAX_FILE_BYTES`) before any array data is, a stored model config must imply
exactly the stored parameter shapes (:meth:`nndl.model_base.Model.param_shapes`) before
a model is built, and a truncated or corrupt file is a :class:`CorruptFileError` naming
it. So a crafted file is refused within bounded memory.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io.atomic import atomic_open

if TYPE_CHECKING:
    from .model_base import Model
    from .solver import Solver

FORMAT = "nndl"
VERSION = 1
# The most array data (uncompressed) one file may declare; checked before reading any.
MAX_FILE_BYTES = 1 << 31
# The JSON metadata is small (config, RNG states, scalars); a larger one is not ours.
MAX_META_BYTES = 1 << 24
# The bit generators a stored RNG state may name (never an arbitrary np.random attribute).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CorruptFileError(ValueError):
    """A file is truncated, corrupt or not the kind of file it should be (names the file)."""


# What zipfile and numpy raise for damaged bytes (a bad CRC, a cut-off member, a mangled
# header, an unknown compression); each becomes a CorruptFileError naming the file.
_DAMAGE = (
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    UnicodeDecodeError,
    SyntaxError,
    tokenize.TokenError,  # numpy parses a mangled legacy header with tokenize
)


class NpzReader:
    """An ``.npz`` file opened for checked reading (use it in a ``with`` block).

    Opening reads every member's header only: plain dtypes, a size matching the zip
    entry's declared size, and :data:`MAX_FILE_BYTES` in all, so no later read can
    allocate more. ``shapes(prefix)`` tells what is stored before anything is read;
    ``array(key, kinds)`` reads one array (its CRC checked) of the given dtype kinds.
    """

    def __init__(self, fn: str, path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES):
        self.fn, self.path = fn, Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (*_DAMAGE, OSError) as exc:  # e.g. a mangled offset: seek() fails
            raise self._corrupt(exc) from None
        try:
            self.headers = self._read_headers(max_bytes)
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    def _corrupt(self, detail: Any) -> CorruptFileError:
        if isinstance(detail, BaseException):
            detail = f"{type(detail).__name__}: {detail}"
        return CorruptFileError(f"{self.fn}: {self.path} is truncated or corrupt ({detail})")

    def _read_headers(self, max_bytes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        total = 0
        for info in self._zip.infolist():
            key = info.filename.removesuffix(".npy")
            if key == info.filename or key in headers:
                raise self._corrupt(f"unexpected zip entry {info.filename!r}")
            try:
                with self._zip.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise self._corrupt(f"{key}: unsupported .npy version {version}")
                    data_bytes = info.file_size - member.tell()
            except CorruptFileError:
                raise
            except (*_DAMAGE, OSError) as exc:
                raise self._corrupt(exc) from None
            if dtype.hasobject:
                raise self._corrupt(f"{key} is an object array (would need pickle)")
            if math.prod(shape) * dtype.itemsize != data_bytes:
                raise self._corrupt(
                    f"{key}: header says {shape} {dtype} but the entry holds {data_bytes} bytes"
                )
            total += info.file_size
            if total > max_bytes:
                raise CorruptFileError(
                    f"{self.fn}: {self.path} declares more than {max_bytes} bytes of arrays; "
                    "refusing to read it"
                )
            headers[key] = (tuple(shape), dtype)
        return headers

    def shapes(self, prefix: str) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the arrays stored as ``prefix + name``."""
        n = len(prefix)
        return {k[n:]: shape for k, (shape, _) in self.headers.items() if k.startswith(prefix)}

    def array(self, key: str, kinds: str = "f") -> np.ndarray:
        """The array stored as ``key``; its dtype kind must be one of ``kinds``."""
        if key not in self.headers:
            raise self._corrupt(f"no {key!r} entry")
        shape, dtype = self.headers[key]
        if dtype.kind not in kinds:
            raise self._corrupt(f"{key} has dtype {dtype}")
        try:
            with self._zip.open(key + ".npy") as member:
                a = np.lib.format.read_array(member, allow_pickle=False)
                member.read()  # reach the end of the entry, where its CRC is checked
        except (*_DAMAGE, OSError) as exc:
            raise self._corrupt(exc) from None
        return a

    def group(self, prefix: str, kinds: str = "f") -> dict[str, np.ndarray]:
        return {name: self.array(prefix + name, kinds) for name in self.shapes(prefix)}

    def meta(self) -> dict[str, Any]:
        """The JSON ``meta`` entry of an nndl file, checked to be one."""
        if "meta" not in self.headers:
            raise ValueError(f"{self.fn}: {self.path} is not an nndl file (no 'meta' entry)")
        shape, dtype = self.headers["meta"]
        if shape != () or dtype.itemsize > MAX_META_BYTES:
            raise self._corrupt(f"meta is {shape} {dtype}, expected a JSON string")
        try:
            meta = json.loads(str(self.array("meta", "U")[()]))
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"meta is not JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{self.fn}: {self.path} is not an nndl file (format {got!r})")
        return meta


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


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-serialisable state of a Generator's bit generator."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> np.random.Generator:
    """Return ``rng`` with ``state`` restored (a new Generator if the bit generator differs).

    Only the bit generators in :data:`BIT_GENERATORS` are accepted; a malformed state is a
    ``ValueError``.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(
            f"set_rng_state: expected the state of one of {list(BIT_GENERATORS)}, got {name!r}"
        )
    if type(rng.bit_generator).__name__ != name:
        rng = np.random.Generator(getattr(np.random, name)())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"set_rng_state: invalid {name} state ({exc})") from None
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


def _check_same_shapes(fn: str, path: Any, what: str, got: dict, expected: dict) -> None:
    """Refuse unless the stored ``got`` {name: shape} are exactly the ``expected`` ones."""
    if set(got) != set(expected):
        raise ValueError(
            f"{fn}: {path} holds {what} {sorted(got)} but the model has {sorted(expected)}"
        )
    for k, shape in got.items():
        if tuple(shape) != tuple(expected[k]):
            raise ValueError(
                f"{fn}: {path} holds {what} {k} of shape {tuple(shape)} but the model's is "
                f"{tuple(expected[k])}"
            )


def _shapes(arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in arrays.items()}


def _read_model_arrays(fn: str, f: NpzReader, model: Model):
    """The stored params and running statistics, checked to have ``model``'s shapes."""
    _check_same_shapes(fn, f.path, "params", f.shapes("params/"), _shapes(model.params))
    state = model.state_arrays() if hasattr(model, "state_arrays") else {}
    _check_same_shapes(fn, f.path, "running statistics", f.shapes("state/"), _shapes(state))
    return f.group("params/"), f.group("state/")


def _apply_model(model: Model, params: dict, state: dict, rng: Any) -> None:
    dtype = getattr(model, "dtype", None)
    model.params = {k: np.array(v, dtype=dtype or v.dtype) for k, v in params.items()}
    if hasattr(model, "load_state_arrays"):
        model.load_state_arrays(state)
    if rng is not None and getattr(model, "rng", None) is not None:
        model.rng = rng


def _model_rng(fn: str, path: Any, meta: dict) -> np.random.Generator | None:
    state = meta.get("model_rng")
    if state is None:
        return None
    try:
        return set_rng_state(np.random.default_rng(), state)
    except ValueError as exc:
        raise CorruptFileError(f"{fn}: {path} holds a bad model_rng: {exc}") from None


def _planned_model(fn: str, f: NpzReader, meta: dict) -> Model:
    """Build the model ``meta`` describes, after checking that its config implies exactly
    the stored parameter shapes (so a crafted config cannot make it allocate more)."""
    from .models import MODELS, build_model

    name, config = meta.get("name"), meta.get("config")
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(
            f"{fn}: {f.path} names the model {name!r}; expected one of {sorted(MODELS)}"
        )
    if not isinstance(config, dict):
        raise CorruptFileError(f"{fn}: {f.path} holds a model config that is not a dict")
    try:
        planned = MODELS[name].param_shapes(**config)
    except NotImplementedError:
        planned = None  # a model without a plan is checked after it is built
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: {f.path} holds an invalid {name} config: {exc}") from None
    if planned is not None:
        _check_same_shapes(fn, f.path, "params", f.shapes("params/"), planned)
    # Building draws initial weights (from the global random state without a seed) that
    # the stored ones replace; loading a model must not disturb a notebook's random state.
    global_state = np.random.get_state()
    try:
        return build_model(name, **config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: {f.path} holds an invalid {name} config: {exc}") from None
    finally:
        np.random.set_state(global_state)


def save_model(path: str | os.PathLike, model: Model, extra: dict | None = None) -> Path:
    """Save ``model`` (params, running statistics, RNG state, name and config) and the
    JSON-serialisable ``extra`` (for example class names or normalisation) to ``path``."""
    meta = _model_meta(model, "model", extra)
    return atomic_savez(path, meta=_json_array(meta), **_model_entries(model))


def load_model(path: str | os.PathLike) -> tuple[Model, dict | None]:
    """Rebuild a model saved by :func:`save_model` (or a Solver checkpoint, which gives the
    parameters training would continue from); returns ``(model, extra)``.

    A truncated or corrupt file, or one whose config does not match its arrays, is a
    ``ValueError`` naming it; nothing larger than the file's arrays is allocated.
    """
    fn = "load_model"
    with NpzReader(fn, path) as f:
        meta = f.meta()
        extra = meta.get("extra")
        if extra is not None and not isinstance(extra, dict):
            raise CorruptFileError(f"{fn}: {path} holds an 'extra' that is not a dict")
        model = _planned_model(fn, f, meta)
        params, state = _read_model_arrays(fn, f, model)
        _apply_model(model, params, state, _model_rng(fn, path, meta))
    return model, extra


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


def _count(fn: str, path: Any, s: dict, key: str) -> int:
    value = s.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptFileError(f"{fn}: {path} holds solver {key} {value!r}; expected an int >= 0")
    return value


def _optim_scalars(fn: str, path: Any, s: dict, params: dict) -> dict[str, dict[str, Any]]:
    """The stored update-rule scalars: one dict of finite JSON scalars per parameter."""
    scalars = s.get("optim_scalars")
    if not isinstance(scalars, dict) or set(scalars) != set(params):
        got = sorted(scalars) if isinstance(scalars, dict) else scalars
        raise CorruptFileError(
            f"{fn}: {path} holds update-rule settings for {got}; expected {sorted(params)}"
        )
    for p, config in scalars.items():
        ok = isinstance(config, dict) and all(
            v is None
            or isinstance(v, bool | str)
            or (isinstance(v, numbers.Real) and math.isfinite(v))
            for v in config.values()
        )
        if not ok:
            raise CorruptFileError(f"{fn}: {path} holds bad update-rule settings for {p}")
    return scalars


def _read_perm(fn: str, f: NpzReader, n: int) -> np.ndarray | None:
    """The stored shuffle of the current epoch: a permutation of ``range(n)``, or None."""
    if "perm" not in f.headers:
        return None
    perm = f.array("perm", "iu")
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise CorruptFileError(f"{fn}: {f.path} holds a shuffle that is not one of {n} examples")
    return perm


def _read_history(fn: str, f: NpzReader, key: str, lengths: tuple[int, ...]) -> list[float]:
    values = f.array(f"history/{key}")
    if values.ndim != 1 or len(values) not in lengths:
        raise CorruptFileError(
            f"{fn}: {f.path} holds {values.shape} history/{key}; expected {lengths[0]} values"
        )
    return values.tolist()


def load_solver_checkpoint(path: str | os.PathLike, solver: Solver) -> dict | None:
    """Restore a checkpoint into ``solver`` and its model; returns the checkpoint's extra.

    The solver must train the same architecture with the same batch size and training
    set size (else ``ValueError``); its ``num_epochs`` may differ, to train for longer.
    Everything is read and checked before the solver changes: a refused or damaged
    checkpoint (a ``ValueError`` naming it) leaves the solver as it was.
    """
    fn = "Solver.load_checkpoint"
    with NpzReader(fn, path) as f:
        meta = f.meta()
        s = meta.get("solver")
        if meta.get("kind") != "checkpoint" or not isinstance(s, dict):
            raise ValueError(f"{fn}: {path} is a saved model, not a Solver checkpoint")
        ipe = _count(fn, path, s, "iterations_per_epoch")
        if ipe != solver.iterations_per_epoch:
            raise ValueError(
                f"{fn}: {path} was written with {ipe} iterations per epoch (batch_size "
                f"{s.get('batch_size')}) but this solver has {solver.iterations_per_epoch} "
                f"(batch_size {solver.batch_size}); expected the same batch size and training set"
            )
        rule = solver.update_rule_name
        if rule is not None and s.get("update_rule") is not None and rule != s["update_rule"]:
            raise ValueError(
                f"{fn}: {path} was trained with update_rule {s['update_rule']!r}, this "
                f"solver uses {rule!r}"
            )
        epoch, iteration = _count(fn, path, s, "epoch"), _count(fn, path, s, "iteration")
        if iteration // ipe != epoch:
            raise CorruptFileError(
                f"{fn}: {path} holds epoch {epoch} and iteration {iteration}, which disagree "
                f"at {ipe} iterations per epoch"
            )
        best_val_acc = s.get("best_val_acc")
        if not isinstance(best_val_acc, numbers.Real) or isinstance(best_val_acc, bool):
            raise CorruptFileError(f"{fn}: {path} holds best_val_acc {best_val_acc!r}")
        model = solver.model
        shapes = _shapes(model.params)
        _check_same_shapes(fn, path, "params", f.shapes("params/"), shapes)
        best_shapes = f.shapes("best/")
        if best_shapes:
            _check_same_shapes(fn, path, "best params", best_shapes, shapes)
        scalars = _optim_scalars(fn, path, s, model.params)
        optim_configs = {}
        for p in model.params:
            for key, shape in f.shapes(f"optim/{p}/").items():
                if shape != shapes[p]:
                    raise ValueError(
                        f"{fn}: {path} holds update-rule state {p}/{key} of shape {shape} but "
                        f"the model's {p} is {shapes[p]}"
                    )
            optim_configs[p] = {**scalars[p], **f.group(f"optim/{p}/")}
        params, state = _read_model_arrays(fn, f, model)
        best = f.group("best/")
        # One loss per step; one accuracy per epoch and one at the start (none yet if the
        # checkpoint was saved before train() ran).
        checks = (epoch + 1, 0) if iteration == 0 else (epoch + 1,)
        histories = {
            "loss": _read_history(fn, f, "loss", (iteration,)),
            "train_acc": _read_history(fn, f, "train_acc", checks),
            "val_acc": _read_history(fn, f, "val_acc", checks),
        }
        perm = _read_perm(fn, f, len(solver.X_train))
        model_rng = _model_rng(fn, path, meta)
        try:
            rng = set_rng_state(np.random.default_rng(), s.get("rng"))
        except ValueError as exc:
            raise CorruptFileError(f"{fn}: {path} holds a bad solver rng: {exc}") from None
        extra = meta.get("extra")

    # Everything is read and checked: only now does the solver change.
    _apply_model(model, params, state, model_rng)
    solver.optim_configs = optim_configs
    solver.best_params = {k: np.array(v) for k, v in best.items()}
    solver.loss_history = histories["loss"]
    solver.train_acc_history = histories["train_acc"]
    solver.val_acc_history = histories["val_acc"]
    solver._perm = perm
    solver.epoch = epoch
    solver.iteration = iteration
    solver.best_val_acc = float(best_val_acc)
    solver.rng = rng
    solver._last_params = None
    return extra
