"""The named data sets (:data:`DATASETS`) and :func:`load_dataset`, which also takes a
path to an image folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import check_count
from .cifar import load_cifar10, load_cifar100
from .folder import load_folder, peek_folder
from .idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_idx_dataset

__all__ = ["Dataset", "DATASETS", "load_dataset", "load_dataset_info", "dataset_shape",
           "is_named", "reads_pixels", "prepare_dataset"]  # fmt: skip

_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# The official site first; the PyTorch mirror when it does not answer (it often refuses).
_MNIST_URLS = ("http://yann.lecun.com/exdb/mnist", "https://ossci-datasets.s3.amazonaws.com/mnist")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",)


@dataclass(frozen=True)
class Dataset:
    """A named data set: its input shape per example, classes and loader.

    ``loader(root, download=, progress=, num_training=, num_validation=, num_test=,
    subtract_mean=, dtype=)`` returns (splits, folder read). With ``pixels``, the loader
    also takes ``dtype=np.uint8`` (and ``subtract_mean=False``) and returns the 8-bit pixels
    as read, which a training run keeps at a quarter of the float32 arrays' memory and
    standardises batch by batch (:class:`nndl.datasets.StandardizedImages`).
    """

    name: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    loader: Callable[..., tuple[dict[str, Any], Path]]
    pixels: bool = False


DATASETS: dict[str, Dataset] = {
    "cifar10": Dataset("cifar10", "CIFAR-10, 32x32 colour, 10 classes (official python "
                       "version)", (3, 32, 32), 10, load_cifar10, pixels=True),
    "cifar100": Dataset("cifar100", "CIFAR-100 with its 100 fine labels", (3, 32, 32), 100,
                        partial(load_cifar100, labels="fine")),
    "cifar100_coarse": Dataset("cifar100_coarse", "CIFAR-100 with its 20 coarse labels",
                               (3, 32, 32), 20, partial(load_cifar100, labels="coarse")),
    "mnist": Dataset("mnist", "MNIST digits, 28x28 grayscale, 10 classes (IDX gzip)",
                     (1, 28, 28), 10, partial(load_idx_dataset, "MNIST", "mnist", _MNIST_MD5,
                                              _MNIST_URLS, MNIST_CLASSES)),
    "fashion_mnist": Dataset("fashion_mnist", "Fashion-MNIST, 28x28 grayscale, 10 classes "
                             "(IDX gzip)", (1, 28, 28), 10,
                             partial(load_idx_dataset, "Fashion-MNIST", "fashion-mnist",
                                     _FASHION_MD5, _FASHION_URLS, FASHION_MNIST_CLASSES)),
}  # fmt: skip
"""The named data sets (a registry: add one by adding an entry)."""


def is_named(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` names a data set of :data:`DATASETS` (else a folder)."""
    return isinstance(name_or_path, str) and name_or_path in DATASETS


def reads_pixels(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether a training run reads ``name_or_path`` as 8-bit pixels and keeps its training
    set so (a named set whose loader gives them: :attr:`Dataset.pixels`)."""
    return is_named(name_or_path) and DATASETS[name_or_path].pixels


def _check_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if len(image_size) != 2:
        raise ValueError(f"load_dataset: expected image_size (H, W), got {image_size!r}")
    return tuple(check_count("load_dataset", "image_size", int(s), 1) for s in image_size)


def dataset_shape(
    name_or_path: str | os.PathLike[str], image_size: Any = None, channels: int | None = None
) -> tuple[tuple[int, int, int], int] | None:
    """(per-example input shape, number of classes) as known before any data is read: a
    named set's own; a folder's from ``image_size``, ``channels``, its class folders and
    its first image's header (3 channels unless given or that image is grayscale; the
    load checks every image). None for a path that is not a folder."""
    if is_named(name_or_path):
        ds = DATASETS[name_or_path]
        return ds.input_shape, ds.num_classes
    if not Path(name_or_path).expanduser().is_dir():
        return None
    try:
        count, hw, gray = peek_folder(name_or_path)
    except ValueError:
        count, hw, gray = 0, None, False
    size = _check_size(image_size) or hw or (32, 32)
    return (int(channels or (1 if gray else 3)), *size), max(count, 2)


def _unknown(name_or_path: Any) -> ValueError:
    return ValueError(
        f"load_dataset: {name_or_path!r} is neither a data set ({', '.join(DATASETS)}) nor a "
        "folder of images (ROOT/<class>/*.png|jpg|...)"
    )


def load_dataset_info(
    name_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    num_training: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    dtype: Any = np.float32,
    subtract_mean: bool = True,
    seed: int = 0,
    download: bool = True,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None | bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(splits, info): :func:`load_dataset` and what was read (``dataset``, ``path``,
    ``input_dim``, ``channels``, ``image_size``; for folders also ``layout``,
    ``ignored_files``, ``cached`` and ``decode_seconds``)."""
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"load_dataset: channels must be 1 or 3, got {channels!r}")
    image_size = _check_size(image_size)
    sizes = {"num_training": num_training, "num_validation": num_validation,
             "num_test": num_test, "subtract_mean": subtract_mean, "dtype": dtype}  # fmt: skip
    if is_named(name_or_path):
        ds = DATASETS[name_or_path]
        if image_size is not None and tuple(image_size) != ds.input_shape[1:]:
            raise ValueError(
                f"load_dataset: {ds.name} images are {ds.input_shape[1]}x"
                f"{ds.input_shape[2]}; image_size {image_size} applies to folders"
            )
        if channels is not None and channels != ds.input_shape[0]:
            raise ValueError(
                f"load_dataset: {ds.name} images have {ds.input_shape[0]} "
                f"channel(s); channels={channels} applies to folders"
            )
        if np.dtype(dtype) == np.uint8 and not ds.pixels:
            raise ValueError(
                f"load_dataset: dtype uint8 (the pixels as read) is available for "
                f"{', '.join(n for n, d in DATASETS.items() if d.pixels)}, not {ds.name}"
            )
        data, folder = ds.loader(root, download=download, progress=progress, **sizes)
        info = {"dataset": ds.name, "path": str(Path(folder).resolve())}
    else:
        if root is not None:
            raise ValueError("load_dataset: root applies to the named data sets, not to a folder")
        if not Path(name_or_path).expanduser().is_dir():
            raise _unknown(name_or_path)
        data, info = load_folder(name_or_path, image_size=image_size, channels=channels,
                                 seed=seed, cache_dir=cache_dir, progress=progress,
                                 **sizes)  # fmt: skip
        info = {"dataset": info["path"], **info}
    shape = data["X_train"].shape[1:]
    info.update(input_dim=[int(s) for s in shape], channels=int(shape[0]),
                image_size=[int(s) for s in shape[1:]])  # fmt: skip
    return data, info


def load_dataset(name_or_path: str | os.PathLike[str], root: Any = None, **kwargs: Any,
                 ) -> dict[str, Any]:  # fmt: skip
    """A data set split for training, as :func:`nndl.data.get_CIFAR10_data` returns it.

    ``name_or_path`` is a name of :data:`DATASETS` (``cifar10``, ``cifar100``,
    ``cifar100_coarse``, ``mnist``, ``fashion_mnist``; found in ``root``, else
    ``$NNDL_DATA_DIR``, else the user cache, and downloaded there if missing) or a folder
    of images (:mod:`nndl.datasets.folder`; ``image_size`` (H, W) resizes, ``channels``
    1 or 3 converts, default: 1 if every image is grayscale, else 3). Returns
    ``X_train (N, C, H, W)`` in ``dtype`` with ``y_train (N,)`` int64, ``X_val``,
    ``y_val``, ``X_test``, ``y_test``, ``mean_image (C, H, W)`` (subtracted from all three
    with ``subtract_mean``) and ``class_names``. Sizes None: every training image but
    the validation ones (1000, or a tenth of fewer than 10,000), every test image.
    Keywords: those of :func:`load_dataset_info`.
    """
    return load_dataset_info(name_or_path, root, **kwargs)[0]


def prepare_dataset(name_or_path: str | os.PathLike[str], root: Any = None, *,
                    image_size: Any = None, channels: int | None = None,
                    progress: bool = False) -> Path:  # fmt: skip
    """Make the data set ready to load (a named one downloaded and read once, a folder
    decoded into its cache) and return its folder."""
    sizes = {"num_training": 1, "num_validation": 0, "num_test": 0}
    if is_named(name_or_path):
        _, info = load_dataset_info(name_or_path, root, progress=progress, **sizes)
    else:
        _, info = load_dataset_info(name_or_path, image_size=image_size, channels=channels,
                                    **sizes)  # fmt: skip
    return Path(info["path"])
