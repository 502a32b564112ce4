"""Small data sets written in each official format: IDX gzip (MNIST), the CIFAR-100
python pickles, and image folders of PNG / JPEG files in every Pillow mode."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip


def idx_bytes(a: np.ndarray, code: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    """``a`` in the IDX layout; ``dims`` overrides the header's dimensions (a lying file)."""
    dims = a.shape if dims is None else dims
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + a.tobytes()


def write_idx(path: Path, a: np.ndarray, **kwargs) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(a, **kwargs)))
    return path


def class_images(labels: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]):
    """uint8 images whose brightness depends on the label (learnable), plus noise."""
    base = 40 + 20 * labels.reshape(-1, *([1] * len(shape)))
    return np.clip(base + rng.normal(0, 20, (len(labels), *shape)), 0, 255).astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """The four MNIST files (28 x 28 images, labels 0-9) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for (images, labels), n in zip((IDX_NAMES[:2], IDX_NAMES[2:]), (n_train, n_test), strict=True):
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / images, class_images(y, rng, (28, 28)))
        write_idx(folder / labels, y)
    return folder


def write_cifar100(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """``train``, ``test`` and ``meta`` of CIFAR-100 as the official files hold them
    (pickle protocol 2, bytes keys as ``pickle.load(encoding='bytes')`` returns them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        x = class_images(fine % 10, rng, (3, 32, 32)).reshape(n, 3072)
        batch = {b"filenames": [f"{i}.png".encode() for i in range(n)],
                 b"batch_label": name.encode(), b"fine_labels": [int(v) for v in fine],
                 b"coarse_labels": [int(v) // 5 for v in fine], b"data": x}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}  # fmt: skip
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def save_image(path: Path, a: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    """``a`` (H, W) or (H, W, C) uint8 saved with Pillow (``mode``: convert to it first)."""
    from PIL import Image

    im = Image.fromarray(a)
    if mode is not None:
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kwargs)
    return path


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 6, size=(8, 8),
                 gray: bool = False, seed: int = 0, suffix: str = ".png") -> Path:  # fmt: skip
    """``root/<class>/<i>.png`` images whose brightness depends on the class."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        y = np.full(per_class, label)
        shape = size if gray else (*size, 3)
        for i, a in enumerate(class_images(y * 3, rng, shape)):
            save_image(root / name / f"{i:03d}{suffix}", a)
    return root
