"""CIFAR-10: find it, fetch it if asked, and load it safely.

The data set is the official python version, a folder ``cifar-10-batches-py`` holding
``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. The folder is
looked for in this order (the first one given is the one used):

1. the ``data_dir`` argument (``--data-dir`` on the command line),
2. the ``NNDL_DATA_DIR`` environment variable,
3. a per-user cache, ``$XDG_CACHE_HOME/nndl`` or ``~/.cache/nndl``.

Each may name either ``cifar-10-batches-py`` itself or the folder holding it. When the
data is not there, :func:`resolve_data_dir` downloads the official archive into it (see
:mod:`nndl.io.download`). Batches are read with :mod:`nndl.io.safe_pickle`, so a crafted file
cannot run code, and every malformed file is reported by name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nndl.io.download import (
    CIFAR10_FILES,
    CIFAR10_FOLDER,
    CIFAR10_MD5,
    download_cifar10,
    where_to_put_message,
)
from nndl.io.safe_pickle import load_pickle_file
from nndl.validation import check_count

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "default_cache_dir",
    "resolve_data_dir",
    "load_class_names",
    "load_CIFAR_batch",
    "load_CIFAR10",
    "get_CIFAR10_data",
    "CIFAR10_pixels",
    "pixel_mean",
    "data_fingerprint",
    "channel_mean_std",
    "apply_preprocess",
]

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATA_DIR_ENV = "NNDL_DATA_DIR"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/nndl`` or ``~/.cache/nndl``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nndl"


def _batches_dir_in(folder: Path) -> Path:
    """``folder`` if it is the batches folder itself, else ``folder/cifar-10-batches-py``."""
    if folder.name == CIFAR10_FOLDER or any((folder / n).is_file() for n in CIFAR10_FILES):
        return folder
    return folder / CIFAR10_FOLDER


def _missing(batches_dir: Path) -> list[str]:
    return [n for n in CIFAR10_FILES if not (batches_dir / n).is_file()]


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    progress: bool = False,
    url: str | None = None,
    md5: str | None = CIFAR10_MD5,
) -> Path:
    """Return the ``cifar-10-batches-py`` folder, downloading CIFAR-10 there if needed.

    The folder comes from ``data_dir``, else ``$NNDL_DATA_DIR``, else
    :func:`default_cache_dir`; each may be the batches folder or its parent. If the data is
    missing and ``download`` is true, the official archive (``url``, default
    ``$NNDL_CIFAR10_URL`` or the Toronto URL) is fetched, checked against ``md5`` and
    unpacked there; ``progress`` shows a progress bar (tqdm when installed). Otherwise, or
    when a download fails, the error says where to put the files. A folder holding only
    some of the files is reported, never overwritten.
    """
    if data_dir is not None:
        if not os.fspath(data_dir):
            raise ValueError("resolve_data_dir: data_dir is empty; expected a folder")
        base, source = Path(data_dir).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_DIR_ENV):
        base, source = Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}"
    else:
        base, source = default_cache_dir(), "the per-user cache folder"
    if base.exists() and not base.is_dir():
        raise NotADirectoryError(
            f"resolve_data_dir: {base} (from {source}) is a file; expected the folder "
            f"{CIFAR10_FOLDER} or the folder holding it"
        )
    batches_dir = _batches_dir_in(base)
    missing = _missing(batches_dir)
    if not missing:
        return batches_dir
    if len(missing) < len(CIFAR10_FILES):
        raise FileNotFoundError(
            f"resolve_data_dir: {batches_dir} (from {source}) holds only part of CIFAR-10; "
            f"missing {missing}. {where_to_put_message(batches_dir)}"
        )
    if not download:
        raise FileNotFoundError(
            f"resolve_data_dir: CIFAR-10 not found in {batches_dir} (from {source}) and "
            f"download=False. {where_to_put_message(batches_dir)}"
        )
    return download_cifar10(batches_dir.parent, url=url, md5=md5, progress=progress)


def _existing_batches_dir(fn: str, root: str | os.PathLike[str]) -> Path:
    batches_dir = _batches_dir_in(Path(root).expanduser())
    missing = _missing(batches_dir)
    if missing:
        raise FileNotFoundError(
            f"{fn}: CIFAR-10 files {missing} not found in {batches_dir}. "
            f"{where_to_put_message(batches_dir)}"
        )
    return batches_dir


def _as_str(x: Any) -> Any:
    return x.decode("latin1") if isinstance(x, bytes) else x


def _read_dict(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Safely unpickle a batch file into a dict with ``str`` keys holding ``keys``."""
    obj = load_pickle_file(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    d = {_as_str(k): v for k, v in obj.items()}
    absent = [k for k in keys if k not in d]
    if absent:
        raise ValueError(f"{path}: missing key(s) {absent}; found {sorted(map(str, d))}")
    return d


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as ``uint8 (n, 3, 32, 32)`` images (R, G, B planes) and ``int64`` labels."""
    d = _read_dict(path, ("data", "labels"))
    data = d["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _ROW
    ):
        if isinstance(data, np.ndarray):
            got = f"{data.dtype} array of shape {data.shape}"
        else:
            got = type(data).__name__
        raise ValueError(
            f"{path}: expected 'data' as a uint8 array of shape (N, {_ROW}), got {got}"
        )
    labels = d["labels"]
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: 'labels' is not a list of ints ({e})") from e
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise ValueError(f"{path}: expected 'labels' as a list of ints, got {y.dtype} {y.shape}")
    if len(y) != len(data):
        raise ValueError(f"{path}: {len(y)} labels for {len(data)} images")
    if y.size and (y.min() < 0 or y.max() >= len(CLASS_NAMES)):
        raise ValueError(
            f"{path}: labels must lie in [0, {len(CLASS_NAMES)}), got {y.min()} to {y.max()}"
        )
    # The 3072 values are the R plane, then G, then B, each row-major: channels first.
    return data.reshape((len(data), *IMAGE_SHAPE)), y.astype(np.int64)


def _to_nhwc_float(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1).astype(np.float32, order="C")


def load_class_names(root: str | os.PathLike[str]) -> list[str]:
    """The 10 class names from ``batches.meta`` (``root`` is ``cifar-10-batches-py``)."""
    path = _batches_dir_in(Path(root).expanduser()) / META_FILE
    names = _read_dict(path, ("label_names",))["label_names"]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str | bytes) for n in names):
        raise ValueError(f"{path}: expected 'label_names' as a list of strings")
    if len(names) != len(CLASS_NAMES):
        # The labels index these names; another count would fail far from the cause.
        raise ValueError(
            f"{path}: expected {len(CLASS_NAMES)} label_names (CIFAR-10), got {len(names)}"
        )
    return [_as_str(n) for n in names]


def load_CIFAR_batch(filename: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as float32 images ``(N, 32, 32, 3)`` and int64 labels ``(N,)``."""
    x, y = _read_batch(Path(filename))
    return _to_nhwc_float(x), y


def _load_train(root: Path, needed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training batches in order, stopping once ``needed`` images have been read."""
    xs, ys, count = [], [], 0
    for name in TRAIN_BATCHES:
        x, y = _read_batch(root / name)
        xs.append(x)
        ys.append(y)
        count += len(x)
        if needed is not None and count >= needed:
            break
    return np.concatenate(xs), np.concatenate(ys)


def load_CIFAR10(
    root: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load all of CIFAR-10 from ``root``, the ``cifar-10-batches-py`` folder.

    Returns ``X_train (50000, 32, 32, 3)`` float32 (pixel values 0..255), ``y_train
    (50000,)`` int64, ``X_test (10000, 32, 32, 3)`` and ``y_test (10000,)``. The parent
    of the batches folder is accepted too. Nothing is downloaded here.
    """
    root = _existing_batches_dir("load_CIFAR10", root)
    x_train, y_train = _load_train(root)
    x_test, y_test = _read_batch(root / TEST_BATCH)
    return _to_nhwc_float(x_train), y_train, _to_nhwc_float(x_test), y_test


def get_CIFAR10_data(
    num_training: int = 49000,
    num_validation: int = 1000,
    num_test: int = 1000,
    subtract_mean: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """CIFAR-10 split and preprocessed for training, channels first.

    Train is the first ``num_training`` training images, validation the next
    ``num_validation``, test the first ``num_test`` test images. With ``subtract_mean`` the
    mean training image (over the ``num_training`` train images only) is subtracted from
    all three. Returns a dict with ``X_train (num_training, 3, 32, 32)`` float32,
    ``y_train (num_training,)`` int64, ``X_val``, ``y_val``, ``X_test``, ``y_test``, plus
    ``mean_image (3, 32, 32)`` float32 (what was subtracted; zeros without
    ``subtract_mean``, so ``(image - mean_image)`` always preprocesses a new image the same
    way) and ``class_names`` (an array of 10 strings): every value is an array, so a
    notebook may print each one's ``.shape``. The folder is found, and fetched if missing
    and ``download`` is true, by :func:`resolve_data_dir`; only as many training batches
    as the split needs are read.
    """
    pixels = CIFAR10_pixels(
        num_training, num_validation, num_test, data_dir,
        download=download, progress=progress, fn="get_CIFAR10_data",
    )  # fmt: skip
    # The mean of the num_training images; zeros without subtract_mean (nothing subtracted).
    zeros = np.zeros(IMAGE_SHAPE, np.float32)
    mean_image = pixel_mean(pixels["X_train"]) if subtract_mean else zeros
    data = {k: v for k, v in pixels.items() if k != "class_names"}
    for key in ("X_train", "X_val", "X_test"):
        data[key] = data[key].astype(np.float32)
        if subtract_mean:
            data[key] -= mean_image
    return {**data, "mean_image": mean_image, "class_names": pixels["class_names"]}


def CIFAR10_pixels(
    num_training: int = 49000, num_validation: int = 1000, num_test: int = 1000,
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True,
    progress: bool = False, fn: str = "CIFAR10_pixels",
) -> dict[str, Any]:  # fmt: skip
    """The splits of :func:`get_CIFAR10_data` as read: ``X_train (num_training, 3, 32,
    32)``, ``X_val`` and ``X_test`` uint8 pixels (nothing subtracted), ``y_train``,
    ``y_val``, ``y_test`` int64 and ``class_names``. A quarter of the float32 arrays'
    memory, for a caller that preprocesses batch by batch
    (:class:`nndl.datasets.StandardizedImages`)."""
    num_training = check_count(fn, "num_training", num_training, 1)
    num_validation = check_count(fn, "num_validation", num_validation, 0)
    num_test = check_count(fn, "num_test", num_test, 0)
    root = resolve_data_dir(data_dir, download=download, progress=progress)
    class_names = np.array(load_class_names(root), dtype=str)
    needed = num_training + num_validation
    x_train_all, y_train_all = _load_train(root, needed)
    if needed > len(x_train_all):
        raise ValueError(
            f"{fn}: num_training + num_validation = {num_training} + {num_validation} = "
            f"{needed}, more than the {len(x_train_all)} training images in {root}"
        )
    if num_test:
        x_test_all, y_test_all = _read_batch(root / TEST_BATCH)
    else:
        x_test_all = np.empty((0, *IMAGE_SHAPE), np.uint8)
        y_test_all = np.empty(0, np.int64)
    if num_test > len(x_test_all):
        raise ValueError(
            f"{fn}: num_test = {num_test}, more than the {len(x_test_all)} test images in {root}"
        )
    return {
        "X_train": x_train_all[:num_training],
        "y_train": y_train_all[:num_training].copy(),
        "X_val": x_train_all[num_training:needed],
        "y_val": y_train_all[num_training:needed].copy(),
        "X_test": x_test_all[:num_test],
        "y_test": y_test_all[:num_test].copy(),
        "class_names": class_names,
    }


def pixel_mean(X: np.ndarray) -> np.ndarray:
    """The mean image (C, H, W) of 8-bit images X (N, C, H, W), float32: accumulated in
    float64, so the mean of 49,000 images is exact to float32 precision (what
    :func:`get_CIFAR10_data` subtracts)."""
    return X.mean(axis=0, dtype=np.float64).astype(np.float32)


def data_fingerprint(
    data: Mapping[str, np.ndarray],
    keys: Sequence[str] = ("X_train", "y_train", "X_val", "y_val"),
    mean_image: np.ndarray | None = None,
) -> str:
    """``"sha256:<hex>"`` of the arrays ``data[key]`` (their dtype, shape and bytes).

    Two data sets with the same fingerprint hold the same examples in the same order; a
    resumed run checks it so that it never continues on other data. With ``mean_image``
    (float32, one image's shape), 8-bit arrays stand for the float32 arrays ``X -
    mean_image`` and get those arrays' fingerprint, computed a block of images at a time
    (:func:`CIFAR10_pixels` and :func:`get_CIFAR10_data`'s float arrays agree).
    """
    h = hashlib.sha256()
    for key in keys:
        a = np.ascontiguousarray(data[key])
        if mean_image is None or a.dtype != np.uint8:
            h.update(f"{key} {a.dtype.str} {a.shape}\n".encode())
            h.update(a.reshape(-1).view(np.uint8))  # the bytes, without a copy
            continue
        h.update(f"{key} {np.dtype(np.float32).str} {a.shape}\n".encode())
        buf = np.empty((max(1, min(1024, len(a))), *a.shape[1:]), np.float32)  # CIFAR-10: 12 MB
        for i in range(0, len(a), len(buf)):
            part = buf[: len(a[i : i + len(buf)])]
            np.subtract(a[i : i + len(buf)], mean_image, out=part, dtype=np.float32)
            h.update(part.reshape(-1).view(np.uint8))
    return "sha256:" + h.hexdigest()


def channel_mean_std(
    X: np.ndarray, channel_axis: int = 1, chunk_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a batch of images.

    ``X`` is ``(N, C, H, W)`` (``channel_axis=1``, the default) or ``(N, H, W, C)``
    (``channel_axis=3``), any numeric dtype. Returns two float64 vectors of length C,
    the mean and the (population) standard deviation of each channel over all images and
    pixels: the statistics per-channel normalisation divides by. Computed from the
    training images only, they are applied unchanged to validation and test images.
    Both passes run over ``chunk_size`` images at a time in float64, so 50,000 CIFAR-10
    images need no full-size float64 copy.
    """
    fn = "channel_mean_std"
    if not (hasattr(X, "ndim") and X.ndim == 4):
        raise ValueError(
            f"{fn}: expected X of shape (N, C, H, W) or (N, H, W, C), got "
            f"{getattr(X, 'shape', type(X).__name__)}"
        )
    if channel_axis not in (1, 3, -1):
        raise ValueError(
            f"{fn}: expected channel_axis 1 (N, C, H, W) or 3 (N, H, W, C), got {channel_axis!r}"
        )
    if X.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: expected a numeric array, got dtype {X.dtype}")
    if len(X) == 0:
        raise ValueError(f"{fn}: expected at least one image, got X of shape {X.shape}")
    chunk_size = check_count(fn, "chunk_size", chunk_size, 1)
    axes = (0, 2, 3) if channel_axis == 1 else (0, 1, 2)
    C = X.shape[channel_axis]
    count = X.size // C
    shape = (1, C, 1, 1) if channel_axis == 1 else (1, 1, 1, C)
    total = np.zeros(C)
    for i in range(0, len(X), chunk_size):
        total += X[i : i + chunk_size].sum(axis=axes, dtype=np.float64)
    mean = total / count
    # A second pass over the deviations: exact where E[x^2] - E[x]^2 would cancel.
    squares = np.zeros(C)
    for i in range(0, len(X), chunk_size):
        dev = X[i : i + chunk_size].astype(np.float64) - mean.reshape(shape)
        squares += np.einsum("nchw,nchw->c" if channel_axis == 1 else "nhwc,nhwc->c", dev, dev)
    return mean, np.sqrt(squares / count)


def apply_preprocess(X: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """Raw images ``X`` (N, C, H, W), 0-255, prepared as a run's training data was: minus
    ``pre['mean_image']`` (C, H, W), then, with per-channel statistics (``pre['mean']``
    and ``pre['std']``, ``--normalize channel``), ``(x - mean) / std``; computed in float32
    (as training did), returned in ``pre['dtype']`` (default float32). ``pre`` is a run's
    preprocess.npz or the ``preprocess`` of :func:`nndl.models.pretrained`; without a
    ``mean_image`` (as :class:`nndl.datasets.StandardizedImages` passes it) none is
    subtracted, and ``X`` is copied, never changed."""
    if pre.get("mean_image") is None:
        X = np.array(X, dtype=np.float32)
    else:
        X = np.asarray(X, dtype=np.float32) - pre["mean_image"]
    if pre.get("mean") is not None:
        X -= np.asarray(pre["mean"], np.float32)[:, None, None]
        X /= np.asarray(pre["std"], np.float32)[:, None, None]
    return X.astype(pre.get("dtype", "float32"), copy=False)
