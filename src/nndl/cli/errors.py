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

__all__ = ["CLIError", "USER_ERRORS", "MAX_TEXT_BYTES", "cli_path", "read_text"]

# config.json, metrics.jsonl and --arch files are small; a far larger one is not ours.
MAX_TEXT_BYTES = 16 << 20


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
    """The text of a small file; one over :data:`MAX_TEXT_BYTES` is refused unread."""
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise CLIError(f"{path} is larger than {MAX_TEXT_BYTES >> 20} MiB; it is not an nndl file")
    return path.read_text(encoding="utf-8")
