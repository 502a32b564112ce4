"""Where the named data sets live and how they are fetched: the official files, their
md5 sums, and an error that names the files and the folder to put them in.

The folder of a data set is looked for as :mod:`nndl.data` looks for CIFAR-10: the
``root`` argument (``--data-dir``), else ``$NNDL_DATA_DIR``, else the per-user cache;
each may be the data set's own folder or the folder holding it. Downloads go through
:func:`nndl.io.download.download_file` (atomic, md5-checked); an archive is unpacked by
:func:`nndl.io.download.safe_extract_tar` into a temporary folder that is moved into
place only when complete. ``$NNDL_DATASETS_URL`` replaces every official base URL (a
mirror, or a closed port in the tests).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..data import DATA_DIR_ENV, default_cache_dir
from ..io.download import ChecksumError, DownloadError, download_file, md5sum, safe_extract_tar

__all__ = ["MIRROR_ENV", "base_folder", "ensure_archive", "ensure_files", "where_to_put"]

MIRROR_ENV = "NNDL_DATASETS_URL"


def base_folder(root: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """(folder, where it came from): ``root``, else ``$NNDL_DATA_DIR``, else the cache."""
    if root is not None:
        if not os.fspath(root):
            raise ValueError("load_dataset: root is empty; expected a folder")
        return Path(root).expanduser(), "the root argument"
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}"
    return default_cache_dir(), "the per-user cache folder"


def _own_folder(base: Path, folder: str, files: Sequence[str]) -> Path:
    """``base`` if it holds the files (or is named ``folder``), else ``base/folder``."""
    if base.name == folder or any((base / f).is_file() for f in files):
        return base
    return base / folder


def where_to_put(title: str, folder: Path, files: Sequence[str], urls: Sequence[str]) -> str:
    """The message that tells a user where the files of a data set must go."""
    return (
        f"Download {' and '.join(urls)} yourself and put {', '.join(files)} in {folder}, "
        f"or point --data-dir (or ${DATA_DIR_ENV}) at a folder holding {folder.name}/ "
        f"({title})."
    )


def _urls(bases: Sequence[str], name: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV)
    return [f"{b.rstrip('/')}/{name}" for b in ([mirror] if mirror else bases)]


def ensure_files(
    title: str,
    root: str | os.PathLike[str] | None,
    folder: str,
    files: Mapping[str, str],
    bases: Sequence[str],
    *,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """The folder holding every file of ``files`` (name -> md5), fetching the missing ones
    from the first of ``bases`` that answers (each checked against its md5)."""
    base, source = base_folder(root)
    if base.exists() and not base.is_dir():
        raise NotADirectoryError(f"{base} (from {source}) is a file; expected a folder")
    target = _own_folder(base, folder, list(files))
    missing = [f for f in files if not (target / f).is_file()]
    if not missing:
        return target
    urls = _urls(bases, missing[0])
    if not download:
        raise FileNotFoundError(
            f"{title}: {missing} not found in {target} (from {source}) and download is off. "
            + where_to_put(title, target, list(files), urls)
        )
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        for name in missing:
            _fetch_one(title, target, name, files[name], bases, progress, list(files))
    except BaseException:
        if created and not any(target.iterdir()):
            target.rmdir()
        raise
    return target


def _fetch_one(title, target: Path, name: str, md5: str, bases, progress, all_files) -> None:
    errors = []
    for url in _urls(bases, name):
        try:
            download_file(url, target / name, md5=md5, progress=progress)
            return
        except ChecksumError:
            raise
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError(
        f"{title} is not in {target} and {'; '.join(errors)}. "
        + where_to_put(title, target, all_files, _urls(bases, name))
    )


def ensure_archive(
    title: str,
    root: str | os.PathLike[str] | None,
    folder: str,
    files: Sequence[str],
    tarball: str,
    md5: str,
    bases: Sequence[str],
    *,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """The folder ``folder`` holding ``files``, unpacked from ``tarball`` (a manual copy
    beside it, else downloaded) when missing; nothing half-unpacked is left behind."""
    base, source = base_folder(root)
    if base.exists() and not base.is_dir():
        raise NotADirectoryError(f"{base} (from {source}) is a file; expected a folder")
    target = _own_folder(base, folder, files)
    missing = [f for f in files if not (target / f).is_file()]
    if not missing:
        return target
    urls = _urls(bases, tarball)
    hint = (f"Download {urls[0]} yourself and put {tarball} in {target.parent} (it is checked "
            f"and unpacked on the next run) or unpack it so that {target} holds "
            f"{', '.join(files)}; or point --data-dir (or ${DATA_DIR_ENV}) at a folder "
            f"holding {folder}/.")  # fmt: skip
    if len(missing) < len(files):
        raise FileNotFoundError(f"{title}: {target} holds only part of it; missing {missing}. "
                                + hint)  # fmt: skip
    local = target.parent / tarball
    if not local.is_file() and not download:
        raise FileNotFoundError(f"{title}: not found in {target} (from {source}). {hint}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fetched, unpack = None, None
    try:
        if local.is_file():
            got = md5sum(local)
            if got != md5:
                raise ChecksumError(f"{local} has md5 {got}, expected {md5} (the published md5 "
                                    f"of {tarball}); delete it or replace it")  # fmt: skip
            archive = local
        else:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{tarball}.", suffix=".tmp")
            os.close(fd)
            fetched = archive = Path(name)
            errors = []
            for url in urls:
                try:
                    download_file(url, archive, md5=md5, progress=progress)
                    break
                except ChecksumError:
                    raise
                except DownloadError as exc:
                    errors.append(str(exc))
            else:
                raise DownloadError(f"{title} is not in {target} and {'; '.join(errors)}. {hint}")
        unpack = tempfile.mkdtemp(dir=target.parent, prefix=f".{folder}.tmp-")
        safe_extract_tar(archive, unpack)
        unpacked = Path(unpack) / folder
        lacking = [f for f in files if not (unpacked / f).is_file()]
        if lacking:
            raise ValueError(f"{archive}: the archive lacks {folder}/{lacking}")
        os.replace(unpacked, target)
    finally:
        if unpack is not None:
            shutil.rmtree(unpack, ignore_errors=True)
        if fetched is not None:
            fetched.unlink(missing_ok=True)
    return target
