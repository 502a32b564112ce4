"""Fetch and unpack the official CIFAR-10 python archive, safely and atomically.

Nothing half-done is ever left where the loader looks: the archive is streamed to a
temporary file beside its destination, its md5 is checked, it is unpacked into a
temporary folder after every member has been checked (no absolute paths, no ``..``, no
links or devices), and only a complete ``cifar-10-batches-py`` folder is moved into place
with ``os.replace``. Any failure removes the temporary files and folders again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from .atomic import atomic_open

__all__ = [
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CIFAR10_TARBALL",
    "CIFAR10_FOLDER",
    "CIFAR10_FILES",
    "URL_ENV",
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "download_cifar10",
    "download_file",
    "safe_extract_tar",
    "md5sum",
    "where_to_put_message",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (
    "batches.meta",
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
)
# Lets a mirror (or a test's local server) stand in for the official URL.
URL_ENV = "NNDL_CIFAR10_URL"

_CHUNK = 1 << 20
# The official archive unpacks to ~178 MB; anything far larger is not CIFAR-10.
_MAX_UNPACKED_BYTES = 2 << 30
# tarfile.FilterError exists only where tarfile has extraction filters (3.10.12+, 3.11.4+).
_FILTER_ERROR: Any = getattr(tarfile, "FilterError", ())


class DownloadError(OSError):
    """The archive could not be fetched (offline, HTTP error, short read)."""


class ChecksumError(DownloadError):
    """The archive's md5 is not the published one; the download has been removed."""


class UnsafeArchiveError(ValueError):
    """A tar member would land outside the target folder or is not a plain file/folder."""


def where_to_put_message(batches_dir: Path) -> str:
    """Tell a user exactly where the data set must go when it cannot be downloaded."""
    batches_dir = Path(batches_dir)
    return (
        f"Download {CIFAR10_URL} yourself and either put {CIFAR10_TARBALL} in "
        f"{batches_dir.parent} (it is checked and unpacked on the next run) or unpack it so "
        f"that {batches_dir} holds the files {', '.join(CIFAR10_FILES)}. "
        f"Or point the NNDL_DATA_DIR environment variable (or --data-dir on the command "
        f"line) at a folder that holds {CIFAR10_FOLDER}/."
    )


def md5sum(path: str | Path) -> str:
    """Return the hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Progress:
    """tqdm on a terminal when it is installed, else a few plain lines on stderr (a bar
    redrawn into a log file or a CI log would write thousands of partial lines)."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.done, self.last_tenth = total, 0, -1
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(
                    total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024
                )
        if self.bar is None:
            print(f"{desc}: downloading", file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.total:
            tenth = 10 * self.done // self.total
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                print(f"  {10 * tenth}%", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stream(response: IO[bytes], out: IO[bytes], total: int | None, progress: bool, desc: str):
    digest = hashlib.md5()
    bar = _Progress(total, desc) if progress else None
    size = 0
    try:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest(), size


def download_file(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically; return ``dest``.

    The bytes go to a temporary file in ``dest``'s folder, which is removed on any
    failure and moved to ``dest`` only when complete (and, if ``md5`` is given, matching).
    Raises :class:`DownloadError` on network failures and :class:`ChecksumError` on an md5
    mismatch; ``dest`` is never left half-written.
    """
    dest = Path(dest)
    # Raising inside the block (network error, short read, checksum) discards the file.
    with atomic_open(dest) as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                got_md5, size = _stream(response, out, total, progress, dest.name)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"could not download {url}: {e}") from e
        if total is not None and size != total:
            raise DownloadError(f"could not download {url}: got {size} of {total} bytes")
        if md5 is not None and got_md5 != md5.lower():
            raise ChecksumError(
                f"the md5 of {url} is {got_md5}, expected {md5}; the download was removed"
            )
    return dest


def _check_member(member: tarfile.TarInfo, dest_real: str, archive: Path) -> None:
    name = member.name
    where = f"{archive}: member {name!r}"
    if not name:
        raise UnsafeArchiveError(f"{where} has an empty name")
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or os.path.isabs(name):
        raise UnsafeArchiveError(f"{where} has an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"{where} contains '..'")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where} is a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is not a regular file or folder (device or fifo)")
    target = os.path.realpath(os.path.join(dest_real, name))
    if os.path.commonpath([dest_real, target]) != dest_real:
        raise UnsafeArchiveError(f"{where} would be written outside {dest_real}")


def safe_extract_tar(archive: str | Path, dest: str | Path) -> None:
    """Unpack ``archive`` into the existing folder ``dest`` after checking every member.

    All members are checked before anything is written: absolute paths, ``..``
    components, symbolic and hard links, devices and fifos raise
    :class:`UnsafeArchiveError`, as does an archive unpacking to more than 2 GiB. Where
    Python supports it, ``tarfile``'s own ``filter='data'`` runs as a second line of defence.
    An unreadable archive raises ``ValueError`` naming it.
    """
    archive, dest = Path(archive), Path(dest)
    dest_real = os.path.realpath(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, dest_real, archive)
            total = sum(m.size for m in members if m.isfile())
            if total > _MAX_UNPACKED_BYTES:
                raise UnsafeArchiveError(
                    f"{archive}: unpacks to {total} bytes, more than {_MAX_UNPACKED_BYTES}"
                )
            kwargs: dict[str, Any] = {}
            if hasattr(tarfile, "data_filter"):
                kwargs["filter"] = "data"
            tar.extractall(dest, members=members, **kwargs)
    except UnsafeArchiveError:
        raise
    except _FILTER_ERROR as e:
        raise UnsafeArchiveError(f"{archive}: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: not a readable tar archive ({e})") from e


def _makedirs(path: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created, deepest last."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _complete(batches_dir: Path) -> bool:
    return all((batches_dir / name).is_file() for name in CIFAR10_FILES)


def download_cifar10(
    parent: str | Path,
    *,
    url: str | None = None,
    md5: str | None = CIFAR10_MD5,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Put CIFAR-10 into ``parent/cifar-10-batches-py`` and return that path.

    Uses ``parent/cifar-10-python.tar.gz`` if it is already there (a manual download),
    else fetches ``url`` (default: ``$NNDL_CIFAR10_URL`` or the official URL). The archive
    must have the md5 ``md5`` (``None`` skips the check). A fetched archive is deleted
    after unpacking; a failure leaves neither files nor folders behind (folders this call
    created are removed again). Offline, :class:`DownloadError` says where to put the files.
    """
    parent = Path(parent).expanduser()
    batches_dir = parent / CIFAR10_FOLDER
    if _complete(batches_dir):
        return batches_dir
    url = url or os.environ.get(URL_ENV) or CIFAR10_URL
    created = _makedirs(parent)
    local = parent / CIFAR10_TARBALL
    fetched: Path | None = None
    unpack_dir: str | None = None
    try:
        try:
            if local.is_file():
                archive = local
                got = md5sum(local)
                if md5 is not None and got != md5.lower():
                    raise ChecksumError(
                        f"{local} has md5 {got}, expected {md5} (the published md5 of "
                        f"{CIFAR10_TARBALL}); delete it or replace it with the official file"
                    )
            else:
                fd, name = tempfile.mkstemp(
                    dir=parent, prefix=f".{CIFAR10_TARBALL}.", suffix=".tmp"
                )
                os.close(fd)
                fetched = archive = Path(name)
                try:
                    download_file(url, archive, md5=md5, progress=progress, timeout=timeout)
                except ChecksumError:
                    raise
                except DownloadError as e:
                    raise DownloadError(
                        f"CIFAR-10 is not in {batches_dir} and {e}. "
                        f"{where_to_put_message(batches_dir)}"
                    ) from e
            unpack_dir = tempfile.mkdtemp(dir=parent, prefix=f".{CIFAR10_FOLDER}.tmp-")
            safe_extract_tar(archive, unpack_dir)
            unpacked = Path(unpack_dir) / CIFAR10_FOLDER
            if not _complete(unpacked):
                missing = [n for n in CIFAR10_FILES if not (unpacked / n).is_file()]
                raise ValueError(f"{archive}: the archive lacks {CIFAR10_FOLDER}/{missing}")
            try:
                os.replace(unpacked, batches_dir)
            except OSError:
                # Another process may have finished first; its complete copy is as good.
                if not _complete(batches_dir):
                    raise
        finally:
            if unpack_dir is not None:
                shutil.rmtree(unpack_dir, ignore_errors=True)
            if fetched is not None:
                fetched.unlink(missing_ok=True)
    except BaseException:
        # Folders this call created go again, so a failure leaves no trace.
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return batches_dir
