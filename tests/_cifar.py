"""A tiny CIFAR-10 in the official python format, and the way to the real one.

``write_synthetic_cifar10`` writes ``data_batch_1..5``, ``test_batch`` and
``batches.meta`` exactly as the official files are laid out (pickle protocol 2, a dict
with ``batch_label``, ``labels``, ``data`` uint8 ``(n, 3072)`` R then G then B planes,
``filenames``), with images that depend weakly on their class (a per-class colour plus
noise) so that a model trained on them can beat chance.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import nndl.data as nndl_data

# The synthetic meta file holds the official names; the loader must read them back.
CLASS_NAMES = list(nndl_data.CLASS_NAMES)
FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Fixed, seed-independent class colours so every synthetic set shares the same classes.
_CLASS_RGB = 128 + 60 * np.random.default_rng(1234).uniform(-1, 1, size=(10, 3))


def _key(name: str, bytes_keys: bool) -> str | bytes:
    return name.encode() if bytes_keys else name


def synthetic_batch(n: int, rng: np.random.Generator, label: str, bytes_keys: bool = False) -> dict:
    """One batch dict in the official layout with ``n`` images."""
    labels = rng.integers(0, 10, size=n)
    pixels = _CLASS_RGB[labels][:, :, None] + rng.normal(0, 45, size=(n, 3, 1024))
    data = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(n, 3072)
    return {
        _key("batch_label", bytes_keys): label,
        _key("labels", bytes_keys): [int(c) for c in labels],
        _key("data", bytes_keys): data,
        _key("filenames", bytes_keys): [f"img_{i:05d}.png" for i in range(n)],
    }


def write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_synthetic_cifar10(
    root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0, bytes_keys: bool = False
) -> Path:
    """Write a small CIFAR-10 into ``root/cifar-10-batches-py``; return that folder.

    Five training batches of ``n_per_batch`` images and a test batch of ``n_test``;
    ``bytes_keys`` writes ``b'data'``-style keys like ``pickle.load(encoding='bytes')``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        batch = synthetic_batch(n_per_batch, rng, f"training batch {i} of 5", bytes_keys)
        write_pickle(folder / f"data_batch_{i}", batch)
    write_pickle(
        folder / "test_batch", synthetic_batch(n_test, rng, "testing batch 1 of 1", bytes_keys)
    )
    meta = {
        _key("label_names", bytes_keys): [n.encode() if bytes_keys else n for n in CLASS_NAMES],
        _key("num_cases_per_batch", bytes_keys): n_per_batch,
        _key("num_vis", bytes_keys): 3072,
    }
    write_pickle(folder / "batches.meta", meta)
    return folder


def read_raw(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The raw ``(data uint8 (n, 3072), labels)`` of every batch, read with plain pickle.

    Only for files this test suite wrote itself (never for untrusted data).
    """
    out = {}
    for name in FILES[1:]:
        with open(folder / name, "rb") as f:
            d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pickle.load(f).items()}
        out[name] = (d["data"], np.asarray(d["labels"]))
    return out


def real_cifar_dir() -> Path:
    """The real ``cifar-10-batches-py`` folder, or skip the calling test.

    Looked for in ``$NNDL_DATA_DIR`` (the folder itself or its parent), then in
    ``../shared/cifar10`` beside the repository.
    """
    candidates = []
    if os.environ.get("NNDL_DATA_DIR"):
        env = Path(os.environ["NNDL_DATA_DIR"]).expanduser()
        candidates += [env, env / "cifar-10-batches-py"]
    candidates.append(REPO_ROOT.parent / "shared" / "cifar10" / "cifar-10-batches-py")
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES):
            return folder
    pytest.skip("the real CIFAR-10 is not available (set NNDL_DATA_DIR)")
