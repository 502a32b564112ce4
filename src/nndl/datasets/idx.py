"""MNIST and Fashion-MNIST: the official IDX files (gzip), read within bounds.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values, row-major. The header is checked
against the size of the data before anything is allocated: for a ``.gz`` file the size
its gzip trailer records, then the stream itself, which must end exactly where the header
says. Images are 28 x 28 uint8 (1 channel), labels uint8 in [0, 10).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .fetch import ensure_files
from .splits import check_label_range, make_splits

__all__ = [
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "IDX_FILES",
    "MAX_IDX_BYTES",
    "read_idx",
    "load_idx_dataset",
]

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle boot")  # fmt: skip
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip
MAX_IDX_BYTES = 1 << 30
"""The largest IDX payload read (MNIST's training images are 47 MB)."""

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CHUNK = 1 << 20


def _gzip_size(path: Path) -> int | None:
    """The uncompressed size (mod 2**32) the gzip trailer records; None if too short."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            return None
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _open(path: Path) -> tuple[Any, int | None]:
    """(binary stream, size of the IDX bytes as far as the file says)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return gzip.open(path, "rb"), _gzip_size(path)
    return open(path, "rb"), path.stat().st_size


def _read_exact(stream: Any, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got : got + _CHUNK])
        if not n:
            break
        got += n
    return got


def read_idx(path: str | os.PathLike[str], max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """The array in the IDX file ``path`` (gzip-compressed or not), in native byte order.

    The header (type, dimensions) is checked against ``max_bytes`` and against the size
    of the file before the array is allocated; a file shorter or longer than its header
    says, a bad magic or a damaged gzip stream is a ``ValueError`` naming ``path``.
    """
    path = Path(path)
    stream, recorded = _open(path)
    try:
        with stream:
            head = stream.read(4)
            bad = len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _TYPES
            if bad or not 1 <= head[3] <= 4:
                raise ValueError(f"{path}: not an IDX file (magic {head.hex() or 'missing'})")
            ndim = head[3]
            raw = stream.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise ValueError(f"{path}: the IDX header ends early")
            shape = struct.unpack(f">{ndim}I", raw)
            dtype = np.dtype(_TYPES[head[2]])
            nbytes = math.prod(shape) * dtype.itemsize
            header_bytes = 4 + 4 * ndim
            if nbytes > max_bytes:
                raise ValueError(f"{path}: the IDX header declares {shape} ({nbytes} bytes), "
                                 f"more than the {max_bytes} read")  # fmt: skip
            total = header_bytes + nbytes
            if recorded is not None and recorded != total % (1 << 32):
                raise ValueError(
                    f"{path}: the IDX header declares {shape} {dtype} ({total} bytes with the "
                    f"header) but the file holds {recorded} bytes"
                )
            out = np.empty(nbytes, np.uint8)
            got = _read_exact(stream, memoryview(out))
            if got < nbytes or stream.read(1):
                raise ValueError(f"{path}: the IDX header declares {shape} {dtype} but the "
                                 f"data {'ends early' if got < nbytes else 'goes on'}")  # fmt: skip
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: damaged gzip stream ({exc})") from None
    return out.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _images(path: Path) -> np.ndarray:
    x = read_idx(path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images (N, H, W), got {x.dtype} {x.shape}")
    return x[:, None]  # (N, 1, H, W)


def _labels(path: Path, n: int, num_classes: int) -> np.ndarray:
    y = read_idx(path)
    if y.ndim != 1 or y.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 labels (N,), got {y.dtype} {y.shape}")
    if len(y) != n:
        raise ValueError(f"{path}: {len(y)} labels for {n} images")
    check_label_range(path, y, num_classes)
    return y.astype(np.int64)


def load_idx_dataset(
    title: str,
    folder: str,
    md5: dict[str, str],
    bases: tuple[str, ...],
    class_names: tuple[str, ...],
    root: Any = None,
    *,
    download: bool = True,
    progress: bool = False,
    **sizes: Any,
) -> tuple[dict[str, Any], Path]:
    """(splits, folder) of an MNIST-style data set (see :func:`~nndl.datasets.load_dataset`)."""
    where = ensure_files(title, root, folder, md5, bases, download=download, progress=progress)
    x_train = _images(where / IDX_FILES[0])
    y_train = _labels(where / IDX_FILES[1], len(x_train), len(class_names))
    x_test = _images(where / IDX_FILES[2])
    y_test = _labels(where / IDX_FILES[3], len(x_test), len(class_names))
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"{where / IDX_FILES[2]}: images of {x_test.shape[2:]} pixels, the "
                         f"training images {x_train.shape[2:]}")  # fmt: skip
    return make_splits("load_dataset", x_train, y_train, x_test, y_test, class_names,
                       **sizes), where  # fmt: skip
