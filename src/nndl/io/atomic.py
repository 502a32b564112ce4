"""Atomic file writes: nothing nndl writes is ever seen half-written.

Checkpoints, models, run-folder files, plots and downloads all go through
:func:`atomic_open`: the bytes land in a temporary file beside the target, are flushed to
disk, and only then replace the target with ``os.replace`` (atomic on POSIX and Windows).
If anything fails on the way, the temporary file is removed and the old target is intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished files get the mode open() would have given them.
_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` only when the ``with`` block succeeds.

    An exception inside the block (a failed write, a failed check) removes the temporary
    file and leaves ``path`` as it was. The parent folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


__all__ = ["atomic_open", "atomic_write_bytes"]
