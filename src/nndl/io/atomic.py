"""Atomic file writes: nothing nndl writes is ever seen half-written.

Checkpoints, models, run-folder files, plots and downloads all go through
:func:`atomic_open`: the bytes land in a temporary file beside the target, are flushed to
disk, and only then replace the target with ``os.replace`` (atomic on POSIX and Windows).
If anything fails on the way, the temporary file is removed and the old target is intact.
"""

from __future__ import annotations

import hashlib
import os
import stat
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


class UnsafeTargetError(OSError):
    """The target of an atomic write is not a regular file (a device, a FIFO, a socket,
    a folder, a dangling link): replacing it would destroy it, so nothing is written."""


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path: str | os.PathLike) -> Path:
    """The file an atomic write to ``path`` replaces, refused unless it is a regular file
    or a new name.

    A symlink to a regular file is followed: the file it points to is replaced (the temp
    file goes beside it, so ``os.replace`` stays on one file system) and the link stays a
    link, as a plain ``open(path, 'w')`` would do. Replacing the link itself would cut it
    silently from the file it names. A dangling link is refused: it is unclear whether the
    link or its missing target was meant.
    """
    path = Path(path)
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if real is not path:
            raise UnsafeTargetError(
                f"{path} is a symlink to {real}, which does not exist; refusing to write "
                "through a dangling link"
            ) from None
        return path  # a new file
    if stat.S_ISREG(mode):
        return real
    what = next((kind for test, kind in _KINDS if test(mode)), "not a regular file")
    via = f" (through the symlink {path})" if real is not path else ""
    raise UnsafeTargetError(
        f"{real}{via} is {what}; refusing to replace it with a regular file (choose a "
        "file name)"
    )


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # Windows, or a file system that won't say
        return 255


# mkstemp appends 8 random characters to the prefix.
_RANDOM_CHARS = 8


def _temp_prefix(path: Path) -> str:
    """``.{name}.tmp-``, or, where that would push the temp name past the file system's
    name limit, the name cut short plus a hash of it (``.{cut}.{hash}.tmp-``); both start
    with ``.`` and hold ``.tmp-``, so a run folder's sweep of stale temp files finds them."""
    prefix = f".{path.name}.tmp-"
    limit = _name_max(path.parent)
    if len(os.fsencode(prefix)) + _RANDOM_CHARS <= limit:
        return prefix
    digest = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:8]
    room = max(limit - _RANDOM_CHARS - len(f"..{digest}.tmp-"), 0)
    cut = os.fsencode(path.name)[:room].decode("utf-8", "ignore")  # whole characters only
    return f".{cut}.{digest}.tmp-"


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` only when the ``with`` block succeeds.

    An exception inside the block (a failed write, a failed check) removes the temporary
    file and leaves ``path`` as it was. The parent folder must exist. Only a regular file
    (or a new name) is replaced: a folder, device, FIFO or socket at ``path`` is an
    :class:`UnsafeTargetError` before anything is written; a symlink to a regular file
    replaces that file and keeps the link.
    """
    path = check_target(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        # Checked again: something else may have been put there while the block ran.
        if check_target(path) != path:
            raise UnsafeTargetError(f"{path} became a symlink while it was being written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


__all__ = ["UnsafeTargetError", "check_target", "atomic_open", "atomic_write_bytes"]
