"""Image folders: ``ROOT/<class>/*.png|jpg|...`` or ``ROOT/train/<class>/...`` with an
optional ``ROOT/test/<class>/...``, decoded once and cached.

Class names are the class folders' names, sorted; images may sit in subfolders of their
class folder (followed through symbolic links, a loop refused). Files whose names do not
end like an image (:data:`~nndl.datasets.images.IMAGE_SUFFIXES`; ``README.txt``,
``.DS_Store``) are ignored and counted; a file that does end like one but cannot be
decoded (not an image, truncated, a decompression bomb) is refused by name rather than
skipped, since silently training on fewer images than the folder holds would change the
results without a word.

Splits: the training images are shuffled by ``seed``, then validation is the first
``num_validation`` and train the next ``num_training``. Without a test folder, a tenth of
all images (at least one) is held out as the test pool first, chosen by ``seed`` alone,
so that the same seed gives the same test images whatever the split sizes.

The decoded uint8 arrays are cached in ``cache_dir`` (default
``~/.cache/nndl/image-folders``) under a key made of the folder, every file's name, size
and modification time, the channel count and the image size: a second run reads one
``.npz`` instead of decoding, and any change to the files decodes again. The cache file
is written atomically, so an interrupted or failed decode leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import default_cache_dir
from ..io.checkpoint import CorruptFileError, NpzReader, atomic_savez
from .images import IMAGE_SUFFIXES, decode, pillow, probe
from .splits import make_splits

__all__ = ["CACHE_VERSION", "FolderListing", "scan_folder", "load_folder", "folder_cache_dir",
           "peek_folder"]  # fmt: skip

CACHE_VERSION = 1
TEST_FRACTION = 10  # without a test folder, 1 image in 10 is held out for testing


@dataclass
class FolderListing:
    """The files of an image folder: ``(path, label, size, mtime_ns)`` per image (the
    path a string below ``root``: tens of thousands of Path objects cost seconds)."""

    root: Path
    class_names: list[str]
    train: list[tuple[str, int, int, int]] = field(default_factory=list)
    test: list[tuple[str, int, int, int]] | None = None
    ignored: int = 0


def folder_cache_dir() -> Path:
    """Where decoded image folders are cached: ``<user cache>/nndl/image-folders``."""
    return default_cache_dir() / "image-folders"


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ValueError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    return [Path(e.path) for e in entries if not e.name.startswith(".") and _is_dir(e)]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a symbolic link
    except OSError:
        return False


def _walk(folder: Path, label: int, out: list, listing: FolderListing, seen: tuple) -> None:
    """Append the images below ``folder`` to ``out``; ``seen`` holds the (device, inode)
    of the folders above it, so a link back to one of them is a loop."""
    st = folder.stat()
    here = (st.st_dev, st.st_ino)
    if here in seen:
        raise ValueError(f"{folder}: a symbolic link loop (it leads back to a folder above it)")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ValueError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            info = e.stat()  # follows links: a dangling link or a link loop fails here
        except OSError as exc:
            raise ValueError(f"{e.path}: cannot follow it ({exc.strerror})") from None
        if e.is_dir():
            _walk(Path(e.path), label, out, listing, (*seen, here))
        elif not e.name.lower().endswith(IMAGE_SUFFIXES) or not e.is_file():
            listing.ignored += 1
        else:
            out.append((e.path, label, int(info.st_size), int(info.st_mtime_ns)))


def _classes(folder: Path, what: str) -> list[Path]:
    dirs = _visible_dirs(folder)
    if not dirs:
        raise ValueError(
            f"{folder} holds no class folders; expected {what}/<class>/*.png|jpg|... (one "
            "folder per class)"
        )
    return dirs


def scan_folder(root: str | os.PathLike[str]) -> FolderListing:
    """The classes and image files of the folder ``root`` (nothing decoded)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    top = {d.name for d in _visible_dirs(root)}
    split = "train" in top and top <= {"train", "test"}
    train_root = root / "train" if split else root
    dirs = _classes(train_root, str(train_root))
    listing = FolderListing(root, [d.name for d in dirs])
    if len(dirs) < 2:
        raise ValueError(f"{train_root} holds one class folder ({dirs[0].name}); a classifier "
                         "needs at least two")  # fmt: skip
    for label, d in enumerate(dirs):
        before = len(listing.train)
        _walk(d, label, listing.train, listing, ())
        if len(listing.train) == before:
            raise ValueError(f"{d}: the class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if split and (root / "test").is_dir():
        listing.test = []
        index = {name: i for i, name in enumerate(listing.class_names)}
        for d in _classes(root / "test", str(root / "test")):
            if d.name not in index:
                raise ValueError(f"{d}: the test class {d.name!r} has no training folder in "
                                 f"{train_root}")  # fmt: skip
            _walk(d, index[d.name], listing.test, listing, ())
        if not listing.test:
            raise ValueError(f"{root / 'test'}: holds no images")
    return listing


def peek_folder(root: str | os.PathLike[str]) -> tuple[int, tuple[int, int] | None, bool]:
    """(number of classes, (H, W) of the first image or None, whether it is grayscale),
    from the class folders and one image header: what a run can plan with before the
    folder is read. Whatever it cannot tell it leaves to :func:`scan_folder` to report."""
    root = Path(root).expanduser()
    top = {d.name for d in _visible_dirs(root)}
    train_root = root / "train" if "train" in top and top <= {"train", "test"} else root
    dirs = _visible_dirs(train_root)
    for d in dirs:
        try:
            with os.scandir(d) as entries:
                first = next((e.path for e in entries if e.is_file()
                              and e.name.lower().endswith(IMAGE_SUFFIXES)), None)  # fmt: skip
            if first is not None:
                hw, gray = probe(first)
                return len(dirs), hw, gray
        except (OSError, ValueError, ImportError):
            break
    return len(dirs), None, False


def _cache_key(listing: FolderListing, channels: int | None, size: Any) -> str:
    # The paths all start with the root as given: cut it off (os.path.relpath is slow).
    cut = len(os.path.join(str(listing.root), ""))
    files = [[p[cut:], s, m, y] for p, y, s, m in listing.train]
    test = None if listing.test is None else [[p[cut:], s, m, y] for p, y, s, m in listing.test]
    root = os.path.realpath(listing.root)
    blob = json.dumps({"version": CACHE_VERSION, "root": root, "train": files, "test": test,
                       "classes": listing.class_names, "channels": channels,
                       "size": None if size is None else list(size)})  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _shape(files: list, channels: int | None, size: Any) -> tuple[int, tuple[int, int]]:
    """(channels, (H, W)) of the folder: headers only; mixed sizes need ``size``."""
    first, gray = None, True
    for path, *_ in files:
        hw, is_gray = probe(path)
        gray = gray and is_gray
        if size is None:
            if first is None:
                first = (path, hw)
            elif hw != first[1]:
                raise ValueError(
                    f"the images differ in size: {first[0]} is {first[1][0]}x{first[1][1]}, "
                    f"{path} is {hw[0]}x{hw[1]} (height x width); give an image size "
                    f"(--image-size H W) to resize them all"
                )
        if channels is not None and size is not None:
            break  # nothing more to learn from the headers; decoding checks each file
    hw = tuple(size) if size is not None else first[1]
    return (channels if channels is not None else (1 if gray else 3)), hw


def _decode_all(files: list, channels: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(files), channels, *hw), np.uint8)
    for i, (path, *_) in enumerate(files):
        a = decode(path, channels, hw)
        if a.shape[1:] != hw:
            raise ValueError(f"{path}: {a.shape[1]}x{a.shape[2]} pixels, expected {hw[0]}x{hw[1]}")
        x[i] = a
    return x, np.array([f[1] for f in files], np.int64)


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with NpzReader("load_dataset", path, max_bytes=1 << 34) as f:
            out = {k: f.array(k, "u" if k.startswith("x") else "i") for k in
                   ("x_train", "y_train", "x_test", "y_test")}  # fmt: skip
            out["channels"] = f.array("channels", "i")
    except (OSError, CorruptFileError, ValueError):
        return None  # absent or damaged: decode again (and rewrite it)
    return out


def _decoded(listing: FolderListing, channels: int | None, size: Any, cache_dir: Path | None,
             progress: bool = False):  # fmt: skip
    """(x_train, y_train, x_test, y_test or None, from_cache, seconds)."""
    started = time.perf_counter()
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{_cache_key(listing, channels, size)}.npz"
        stored = _read_cache(cache) if cache.is_file() else None
        if stored is not None:
            x_test = stored["x_test"] if listing.test is not None else None
            return (stored["x_train"], stored["y_train"], x_test, stored["y_test"], True,
                    time.perf_counter() - started)  # fmt: skip
    pillow()
    if progress:
        count = len(listing.train) + len(listing.test or [])
        where = f"; cached in {cache_dir} for the next run" if cache is not None else ""
        print(f"{listing.root}: decoding {count} images{where}", file=sys.stderr)
    c, hw = _shape(listing.train + (listing.test or []), channels, size)
    x_train, y_train = _decode_all(listing.train, c, hw)
    if listing.test is not None:
        x_test, y_test = _decode_all(listing.test, c, hw)
    else:
        x_test, y_test = np.empty((0, c, *hw), np.uint8), np.empty(0, np.int64)
    if cache is not None:
        # Written only once every image decoded; atomic, so a kill leaves no partial file.
        atomic_savez(cache, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                     channels=np.array(c))  # fmt: skip
    x_test_out = x_test if listing.test is not None else None
    return x_train, y_train, x_test_out, y_test, False, time.perf_counter() - started


def load_folder(
    root: str | os.PathLike[str],
    *,
    num_training: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    seed: int = 0,
    subtract_mean: bool = True,
    dtype: Any = np.float32,
    cache_dir: str | os.PathLike[str] | None | bool = True,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(splits, info) of an image folder (see the module docstring).

    ``cache_dir``: True for :func:`folder_cache_dir`, a folder, or False/None for no
    cache; ``progress``: a line on stderr before decoding. ``info`` holds the folder,
    layout, channels, image size, the number of ignored files, whether the cache was used
    and the seconds decoding (or reading the cache) took.
    """
    listing = scan_folder(root)
    if cache_dir is True:
        cache_dir = folder_cache_dir()
    x_train, y_train, x_test, y_test, cached, seconds = _decoded(
        listing, channels, image_size, Path(cache_dir) if cache_dir else None, progress
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    if x_test is None:
        pool = max(1, len(order) // TEST_FRACTION)
        x_test, y_test = x_train[order[:pool]], y_train[order[:pool]]
        order = order[pool:]
    else:
        test_order = np.random.default_rng([seed, 1]).permutation(len(x_test))
        x_test, y_test = x_test[test_order], y_test[test_order]
    # Validation first, then train: "all the rest" (num_training None) is a suffix, and
    # the validation images stay the same whatever num_training is.
    n_val = _val_count(num_validation, len(order))
    room = len(order) - n_val
    if num_training is None:
        num_training = room
    elif num_training > room:
        raise ValueError(
            f"load_dataset: num_training + num_validation = {num_training} + "
            f"{n_val}, more than the {len(order)} training images in {root}"
        )
    chosen = np.concatenate([order[n_val : n_val + num_training], order[:n_val]])
    x_train, y_train = x_train[chosen], y_train[chosen]
    data = make_splits("load_dataset", x_train, y_train, x_test, y_test, listing.class_names,
                       num_training=num_training, num_validation=n_val, num_test=num_test,
                       subtract_mean=subtract_mean, dtype=dtype)  # fmt: skip
    info = {
        "path": str(Path(os.path.realpath(listing.root))),
        "layout": "train/test" if listing.test is not None else "classes",
        "channels": int(x_train.shape[1]),
        "image_size": [int(s) for s in x_train.shape[2:]],
        "ignored_files": listing.ignored,
        "cached": cached,
        "decode_seconds": round(seconds, 3),
    }
    return data, info


def _val_count(num_validation: int | None, n: int) -> int:
    if num_validation is None:
        return min(1000, n // 10)
    if num_validation >= n:
        raise ValueError(f"load_dataset: num_validation = {num_validation} leaves no training "
                         f"images of the {n} available")  # fmt: skip
    return int(num_validation)
