"""A restricted unpickler for data files such as the CIFAR-10 python batches.

``pickle.load`` runs whatever callables a file names, so a crafted "data set" can run
arbitrary code the moment it is opened. :class:`SafeUnpickler` resolves only the handful
of globals that pickled NumPy arrays need and refuses everything else with
:class:`RefusedGlobalError` before anything is imported or called. Dicts, lists,
tuples, numbers and strings need no globals at all, so they load as usual.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["RefusedGlobalError", "SafeUnpickler", "safe_load", "safe_loads", "load_pickle_file"]

# Where the array reconstructor lives in the running NumPy (``numpy._core`` since 2.0).
try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore

_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes at protocol 2 as ``_codecs.encode(str, 'latin1')``; only that
    # text-to-bytes case is allowed (not arbitrary codecs such as zlib or base64).
    if not isinstance(obj, str) or not isinstance(encoding, str):
        raise RefusedGlobalError("_codecs.encode: only str -> bytes is allowed")
    if encoding.lower() not in _LATIN1:
        raise RefusedGlobalError(f"_codecs.encode: refusing encoding {encoding!r}")
    return obj.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Python 3 writes b'' at protocol 2 as ``bytes()``; nothing else needs this global.
    if args:
        raise RefusedGlobalError("builtins.bytes: only bytes() with no arguments is allowed")
    return b""


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    # Object dtypes would let an array hold arbitrary Python objects; data never needs them.
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.hasobject:
        raise RefusedGlobalError(f"numpy.dtype: refusing object dtype {spec!r}")
    return dt


# (module, name) -> the object to hand back. Nothing is imported by name.
_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global (a callable or class) that is not on the allow list."""


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals NumPy arrays need.

    Allowed: ``numpy.core.multiarray._reconstruct`` and ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype`` (no object dtypes), ``_codecs.encode`` (latin-1 text to
    bytes only) and ``bytes()`` (empty bytes only). Anything else raises
    :class:`RefusedGlobalError` naming the global, without importing or calling it.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load global '{module}.{name}': only NumPy arrays and plain "
                "containers are allowed in this file"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobalError(f"refusing persistent id {pid!r}")


def safe_load(file: IO[bytes], *, encoding: str = "latin1") -> Any:
    """Unpickle one object from a binary file with :class:`SafeUnpickler`.

    ``encoding`` decodes Python 2 ``str`` objects: ``'latin1'`` gives ``str`` (and is what
    NumPy needs for Python 2 array data), ``'bytes'`` keeps them as ``bytes``.
    """
    return SafeUnpickler(file, encoding=encoding).load()


def safe_loads(data: bytes, *, encoding: str = "latin1") -> Any:
    """Like :func:`safe_load` but from a ``bytes`` object."""
    return safe_load(io.BytesIO(data), encoding=encoding)


def load_pickle_file(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Safely unpickle ``path``; every failure names the file.

    A refused global raises :class:`RefusedGlobalError`; a truncated or otherwise
    unreadable pickle raises ``ValueError``; a missing file ``FileNotFoundError``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return safe_load(f, encoding=encoding)
        except RefusedGlobalError as e:
            raise RefusedGlobalError(f"{path}: {e}") from None
        except (
            EOFError,
            pickle.UnpicklingError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
        ) as e:
            reason = "the file is truncated" if isinstance(e, EOFError) else str(e)
            raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {reason})") from e
