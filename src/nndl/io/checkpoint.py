"""The nndl file format: a nested dict of arrays and JSON values in one ``.npz`` file.

This module knows files, not models or solvers: :func:`save_tree` writes any nested dict
whose leaves are NumPy arrays or JSON values (None, bools, numbers, strings, lists of
them), and :func:`read_tree` gives the same nested dict back. Nothing is pickled: every
file loads with ``np.load(path, allow_pickle=False)``, and files are written atomically
(:mod:`nndl.io.atomic`), so a crash mid-write leaves the previous file intact.

Layout: each array is the ``.npy`` entry named by its key path joined with ``/``
(``model/params/block1.conv.W``); the entry ``meta`` is a 0-d unicode array holding the
JSON of everything else, with ``"format": "nndl"`` and ``"version"`` (:data:`VERSION`)
added at the top. The keys of a tree are non-empty strings without ``/``.

Reading trusts nothing in the file. :class:`NpzReader` reads every entry's header first
(plain dtypes only, each size matching its zip entry's, :data:`MAX_FILE_BYTES` in all)
before any array data, and a truncated or corrupt file is a :class:`CorruptFileError`
naming it. :func:`read_tree` then hands the caller an *outline* (the tree with a
:class:`StoredArray` (shape, dtype) in place of each array) to check before a single
array is read: a model loader compares the parameter shapes its config implies with
the stored ones, so a crafted config cannot make it allocate more than the file holds.

Version history: 1 (nndl 0.1.0): models and checkpoints in a flat layout
(``params/``, ``state/``, ``optim/``, ... beside a ``meta`` with ``name``, ``config``,
``model_rng``, ``solver``); read back through :mod:`nndl.models.legacy`. 2: any tree.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .atomic import atomic_open
from .jsonfile import JSONLimitError, loads_bounded

__all__ = [
    "FORMAT",
    "VERSION",
    "MAX_FILE_BYTES",
    "MAX_META_BYTES",
    "CorruptFileError",
    "NpzReader",
    "StoredArray",
    "atomic_savez",
    "save_tree",
    "read_tree",
    "check_shapes",
]

FORMAT = "nndl"
VERSION = 2
# The most array data (uncompressed) one file may declare; checked before reading any.
MAX_FILE_BYTES = 1 << 31
# The JSON metadata is small (configs, RNG states, scalars); a larger one is not ours.
MAX_META_BYTES = 1 << 24
# Array dtypes a tree may hold: bool, signed and unsigned ints, floats.
ARRAY_KINDS = "biuf"


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
    entry's declared size, and ``max_bytes`` in all, so no later read can allocate more.
    ``shapes(prefix)`` tells what is stored before anything is read; ``array(key,
    kinds)`` reads one array (its CRC checked) of the given dtype kinds. ``fn`` names
    the caller in every error.
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

    def meta(self) -> dict[str, Any]:
        """The JSON ``meta`` entry of an nndl file, checked to be one."""
        if "meta" not in self.headers:
            raise ValueError(f"{self.fn}: {self.path} is not an nndl file (no 'meta' entry)")
        shape, dtype = self.headers["meta"]
        if shape != () or dtype.itemsize > MAX_META_BYTES:
            raise self._corrupt(f"meta is {shape} {dtype}, expected a JSON string")
        try:
            meta = loads_bounded(str(self.array("meta", "U")[()]), "meta")
        except JSONLimitError as exc:
            raise self._corrupt(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"meta is not JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{self.fn}: {self.path} is not an nndl file (format {got!r})")
        version = meta.get("version")
        if isinstance(version, bool) or version not in range(1, VERSION + 1):
            raise ValueError(
                f"{self.fn}: {self.path} is nndl file version {version!r}; this nndl reads "
                f"versions 1 to {VERSION} (a newer nndl wrote it?)"
            )
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez(f, **checked)
    return path


# --- trees ------------------------------------------------------------------------------


class StoredArray(NamedTuple):
    """What an outline holds in place of an array: its shape and dtype, from the header."""

    shape: tuple[int, ...]
    dtype: np.dtype


def _json_leaf(fn: str, where: str, value: Any) -> Any:
    """``value`` as JSON (NumPy scalars become Python ones; no arrays below a list), or a
    TypeError naming it."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_leaf(fn, f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_leaf(fn, f"{where}.{k}", v) for k, v in value.items()}  # inside a list
    raise TypeError(
        f"{fn}: {where} is a {type(value).__name__}; expected arrays, dicts or JSON values"
    )


def _split(fn: str, tree: Mapping[str, Any], prefix: str, arrays: dict) -> dict[str, Any]:
    """The JSON part of ``tree``; its arrays go into ``arrays`` under their key paths."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise TypeError(f"{fn}: key {key!r} under {prefix or '/'}: expected a name without '/'")
        path = prefix + key
        if isinstance(value, Mapping):
            out[key] = _split(fn, value, path + "/", arrays)
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in ARRAY_KINDS:
                raise TypeError(f"{fn}: {path} is a {value.dtype} array; expected numbers")
            arrays[path] = value
        else:
            out[key] = _json_leaf(fn, path, value)
    return out


def save_tree(path: str | os.PathLike, tree: Mapping[str, Any]) -> Path:
    """Write the nested dict ``tree`` to ``path`` (``.npz`` appended if missing), atomically.

    Leaves are arrays (bool, int or float) or JSON values; ``format`` and ``version`` are
    added at the top (and may not be given). Returns the path written.
    """
    fn = "save_tree"
    reserved = sorted({"format", "version", "meta"} & set(tree))
    if reserved:
        raise ValueError(f"{fn}: the top-level keys {reserved} are reserved for the format")
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": VERSION, **_split(fn, tree, "", arrays)}
    return atomic_savez(path, meta=np.array(json.dumps(meta, allow_nan=True)), **arrays)


def _insert(f: NpzReader, tree: dict, key: str, leaf: Any) -> None:
    """Put ``leaf`` at the ``/``-joined ``key`` of ``tree`` (a JSON tree from the file)."""
    *parents, last = key.split("/")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise f._corrupt(f"array {key!r} lies under a JSON value")
    if not last or last in node:
        raise f._corrupt(f"array {key!r} clashes with a JSON value")
    node[last] = leaf


def read_tree(
    fn: str,
    path: str | os.PathLike,
    check: Callable[[dict[str, Any]], None] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> dict[str, Any]:
    """The nested dict saved by :func:`save_tree` (or an older nndl) at ``path``.

    ``check(outline)``, if given, sees the tree with a :class:`StoredArray` in place of
    each array before any array is read, and raises to refuse the file. The result holds
    ``version`` (1 for files of nndl 0.1.0, see :mod:`nndl.models.legacy`). Errors name ``fn``
    and the file: :class:`CorruptFileError` for damage, ``ValueError`` otherwise.
    """
    with NpzReader(fn, path, max_bytes) as f:
        meta = f.meta()
        keys = [k for k in f.headers if k != "meta"]
        outline = json.loads(json.dumps(meta))  # a deep copy
        for key in keys:
            _insert(f, outline, key, StoredArray(*f.headers[key]))
        if check is not None:
            check(outline)
        for key in keys:
            _insert(f, meta, key, f.array(key, ARRAY_KINDS))
    meta.pop("format")
    return meta


def check_shapes(where: str, what: str, got: Mapping[str, Any], expected: Mapping[str, Any]):
    """Refuse unless ``got`` and ``expected`` ({name: shape, array or StoredArray}) have the
    same names and shapes; messages start with ``where`` (the caller and the file)."""

    def shape(v: Any) -> tuple[int, ...] | str:
        if isinstance(v, (StoredArray, np.ndarray)):
            return tuple(v.shape)
        return v if isinstance(v, tuple) else "none (not an array)"

    if not isinstance(got, Mapping) or set(got) != set(expected):
        names = sorted(got) if isinstance(got, Mapping) else type(got).__name__
        raise ValueError(f"{where} holds {what} {names} but the model has {sorted(expected)}")
    for k, v in got.items():
        if shape(v) != shape(expected[k]):
            raise ValueError(
                f"{where} holds {what} {k} of shape {shape(v)} but the model's is "
                f"{shape(expected[k])}"
            )
