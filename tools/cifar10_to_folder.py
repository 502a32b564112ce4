"""Write CIFAR-10 out as an image folder of PNGs, for ``nndl train --dataset FOLDER``.

    python tools/cifar10_to_folder.py ../shared/cifar10 runs/cifar10-png

writes ``OUT/train/<class>/<index>.png`` (the 50,000 training images) and
``OUT/test/<class>/<index>.png`` (the 10,000 test images), lossless, the pixels exactly
those of the official python batches; ``--limit N`` writes only the first N of each
split. The folder appears complete or not at all: the images go to a temporary folder
beside OUT, which is renamed to OUT at the end. benchmarks/bench_datasets.py trains on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from nndl.data import (
    TEST_BATCH,
    TRAIN_BATCHES,
    _read_batch,
    load_class_names,
    resolve_data_dir,
)

__all__ = ["write_folder", "main"]


def _write_split(out: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    from PIL import Image

    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(image.transpose(1, 2, 0)).save(out / names[label] / f"{i:05d}.png")


def write_folder(data_dir: str | os.PathLike, out: str | os.PathLike, limit: int | None = None):
    """Write the CIFAR-10 batches in ``data_dir`` as PNGs under ``out`` (see the module
    docstring); returns ``out``."""
    root = resolve_data_dir(data_dir, download=False)
    names = load_class_names(root)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        xs, ys = zip(*(_read_batch(root / b) for b in TRAIN_BATCHES), strict=True)
        x, y = np.concatenate(xs), np.concatenate(ys)
        _write_split(tmp / "train", x[:limit], y[:limit], names)
        x, y = _read_batch(root / TEST_BATCH)
        _write_split(tmp / "test", x[:limit], y[:limit], names)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="the folder holding cifar-10-batches-py (or that folder)")
    ap.add_argument("out", help="the image folder to create (must not exist)")
    ap.add_argument("--limit", type=int, metavar="N", help="only the first N images per split")
    args = ap.parse_args(argv)
    try:
        out = write_folder(args.data_dir, args.out, args.limit)
    except (OSError, ValueError) as exc:
        print(f"cifar10_to_folder: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
