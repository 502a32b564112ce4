"""How the command line reports bad input: :class:`CLIError` and the errors that mean it.

Every command turns bad input (a flag, a missing or damaged file, an unreadable image,
too little memory) into one line, ``nndl CMD: error: ...``, and exit status 2
(:func:`nndl.cli.entry.main`); nothing the user can cause prints a traceback.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

from ..io.jsonfile import MAX_JSON_BYTES, JSONLimitError, read_bounded

__all__ = ["CLIError", "USER_ERRORS", "MAX_TEXT_BYTES", "cli_path", "read_text"]

# config.json, metrics.jsonl and --arch files are small; a far larger one is not ours.
MAX_TEXT_BYTES = MAX_JSON_BYTES


class CLIError(Exception):
    """A usage error the command line reports as ``nndl CMD: error: ...`` (exit status 2)."""


def cli_path(value: str | os.PathLike, what: str) -> Path:
    """A path given on the command line: ``~`` expanded, an empty one refused.

    An empty value is almost always an unset shell variable; taken as the current folder
    it would scatter a run's files there.
    """
    if not os.fspath(value).strip():
        raise CLIError(f"{what} is empty (an unset shell variable?); expected a folder")
    return Path(value).expanduser()


# Errors that mean bad input (flags, files, data): reported as `nndl CMD: error: ...`, exit 2.
# A RefusedGlobalError (a crafted pickle) is an UnpicklingError.
USER_ERRORS = (
    CLIError,
    ValueError,
    OSError,
    ImportError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
)


def read_text(path: Path) -> str:
    """The text of a small regular file; past :data:`MAX_TEXT_BYTES` bytes (as read, not
    as reported), or a FIFO, device or folder, it is refused
    (:func:`nndl.io.jsonfile.read_bounded`)."""
    try:
        return read_bounded(path, max_bytes=MAX_TEXT_BYTES)
    except JSONLimitError as exc:
        raise CLIError(str(exc)) from None
