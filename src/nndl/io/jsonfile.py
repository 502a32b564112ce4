"""Bounded JSON: every JSON file and flag nndl reads goes through :func:`read_json` or
:func:`loads_bounded`.

A file is read only if it is a regular file, and at most ``max_bytes + 1`` bytes of it
are read (its reported size is not trusted: ``/dev/zero`` reports 0). Nesting is
checked on the text, without recursion, before :mod:`json`'s recursive decoder sees
it, so a crafted file cannot exhaust the stack. Every refusal is a :class:`ValueError`
(:class:`JSONLimitError`) that names the file or flag and the limit.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "JSONLimitError",
    "read_bounded",
    "loads_bounded",
    "read_json",
    "check_depth",
    "text_depth",
]

MAX_JSON_BYTES = 16 << 20
"""The most bytes of one JSON file (config.json, metrics.jsonl, --arch, --space ...)."""

MAX_JSON_DEPTH = 64
"""The deepest nesting of lists and objects in JSON nndl reads (a valid spec needs
fewer than 40, see :data:`nndl.nn.spec.MAX_NESTING`)."""

# A JSON string: quote, then runs of plain characters or escapes, then quote.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class JSONLimitError(ValueError):
    """JSON (or a file said to hold it) beyond nndl's limits: too large, too deeply
    nested, or not a regular file."""


def _mib(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n:,} bytes"


def read_bounded(path: str | os.PathLike, what: str | None = None,
                 max_bytes: int = MAX_JSON_BYTES) -> str:  # fmt: skip
    """The UTF-8 text of the regular file ``path``, refused past ``max_bytes`` bytes.

    A FIFO, a device or a folder is refused before it is read (and a FIFO is opened
    without waiting for a writer). Missing files raise :class:`FileNotFoundError`;
    undecodable ones :class:`UnicodeDecodeError` (a ValueError).
    """
    path = Path(path)
    what = str(path) if what is None else what
    _check_regular(os.stat(path).st_mode, what)  # before open: opening a FIFO may block
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(f.fileno()).st_mode, what)  # it may have been swapped
        data = f.read(max_bytes + 1)  # counted as read: a device's st_size means nothing
    if len(data) > max_bytes:
        raise JSONLimitError(f"{what} is larger than {_mib(max_bytes)}; it is not an nndl file")
    return data.decode("utf-8")


def _check_regular(mode: int, what: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "not a regular file")  # fmt: skip
    raise JSONLimitError(f"{what} is {kind}; expected a regular file")


def text_depth(text: str | bytes) -> int:
    """The deepest nesting of brackets outside strings in JSON ``text`` (no recursion)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if b'"' in data:
        data = _STRING.sub(b"", data)
    steps = _OPEN[np.frombuffer(data, np.uint8)]
    steps = steps[steps != 0].astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def loads_bounded(text: str | bytes, what: str = "JSON",
                  max_depth: int = MAX_JSON_DEPTH) -> Any:  # fmt: skip
    """``json.loads(text)``, refused with :class:`JSONLimitError` when nested deeper than
    ``max_depth`` levels; invalid JSON raises :class:`json.JSONDecodeError` as usual."""
    if text_depth(text) > max_depth:
        raise JSONLimitError(f"{what}: JSON nested deeper than {max_depth} levels")
    return json.loads(text)


def read_json(path: str | os.PathLike, what: str | None = None,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:  # fmt: skip
    """The JSON value in the file ``path``, read by :func:`read_bounded` and decoded by
    :func:`loads_bounded`; ``what`` (default: the path) names it in errors."""
    what = str(path) if what is None else what
    return loads_bounded(read_bounded(path, what, max_bytes), what, max_depth)


def check_depth(obj: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a Python value (lists, tuples, dicts) nested deeper than ``max_depth``
    levels, checked without recursion (a spec built in Python, say)."""
    stack = [(obj, 1)]  # a value that holds itself is infinitely deep: refused too
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > max_depth:
            raise JSONLimitError(f"{what}: nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
