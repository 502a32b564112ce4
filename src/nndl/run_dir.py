"""The run folder that ``nndl train`` writes and ``nndl evaluate`` / ``predict`` read.

A run folder holds (every file written atomically: temp file beside it + ``os.replace``):

- ``config.json``: the settings (every flag, defaults filled in), the model's registry
  name and constructor config, the data (folder, split sizes, class names, input
  shape), nndl / NumPy / Python versions, and one entry per ``--resume``;
- ``metrics.jsonl``: one JSON object per finished epoch: ``epoch``, ``iteration``,
  ``loss`` (mean training loss of the epoch), ``train_acc``, ``val_acc``, ``lr``,
  ``elapsed`` (training seconds since the run began, summed over resumes);
- ``best_model.npz`` / ``last_model.npz``: :func:`nndl.checkpoint.save_model` files of
  the best-validation and the latest epoch (``extra``: epoch, iteration, accuracies);
- ``preprocess.npz``: ``mean_image`` (C, H, W) subtracted from every input,
  ``class_names`` and ``dtype``, so that ``predict`` prepares images as training did;
- ``checkpoint.npz``: :meth:`nndl.solver.Solver.save_checkpoint` at each epoch end,
  which ``nndl train --resume`` continues from;
- ``loss.png``, ``accuracy.png``, ``val_acc_vs_time.png``, ``filters.png``;
- after ``nndl evaluate``: ``evaluation.json`` (and ``confusion_matrix.png`` with --plot).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_bytes
from .checkpoint import atomic_savez, load_model


class CLIError(Exception):
    """A usage error the command line reports as ``nndl CMD: error: ...`` (exit status 2)."""


def require_matplotlib(alternative: str | None = None) -> None:
    """Select the non-interactive Agg backend, or explain how to install matplotlib."""
    try:
        import matplotlib
    except ImportError as exc:
        hint = f" (or pass {alternative})" if alternative else ""
        raise CLIError(f"plots need matplotlib: pip install 'nndl[cli]'{hint}") from exc
    # Only the command line picks a backend: it writes PNGs and must work without a display.
    matplotlib.use("Agg")


def batched_scores(model: Any, X: np.ndarray, batch_size: int = 200) -> np.ndarray:
    """Class scores ``(N, C)`` of ``model`` in test mode, ``batch_size`` inputs at a time."""
    if len(X) == 0:
        raise CLIError("no images to score")
    return np.concatenate(
        [np.asarray(model.loss(X[i : i + batch_size])) for i in range(0, len(X), batch_size)]
    )


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (max subtracted first, so large scores cannot overflow)."""
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def evaluate_scores(scores: np.ndarray, y: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy, class counts and confusion matrix, JSON-ready."""
    from .plots import confusion_matrix

    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(scores).argmax(axis=1)
    cm = confusion_matrix(y, pred, len(class_names))
    counts = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), counts, out=np.zeros(len(cm)), where=counts > 0)
    return {
        "num_images": int(len(y)),
        "accuracy": float(np.mean(pred == y)) if len(y) else 0.0,
        "per_class_accuracy": {n: float(a) for n, a in zip(class_names, per_class, strict=True)},
        "class_counts": {n: int(c) for n, c in zip(class_names, counts, strict=True)},
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
    }


def evaluation_report(result: dict[str, Any]) -> str:
    """The text ``nndl evaluate`` prints for an :func:`evaluate_scores` result."""
    names, cm = result["class_names"], result["confusion_matrix"]
    split = result["split"]
    lines = [
        f"{result['model_file']} (epoch {result['epoch']}) on the {split} split, "
        f"{result['num_images']} images",
        f"{split} accuracy: {result['accuracy']:.4f}",
        "per-class accuracy:",
    ]
    width = max(len(n) for n in names)
    for i, name in enumerate(names):
        acc, n = result["per_class_accuracy"][name], result["class_counts"][name]
        lines.append(f"  {name:<{width}}  {acc:.4f}  ({cm[i][i]} / {n})")
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    cw = max(4, len(str(max(max(row) for row in cm))) + 1)
    lines.append(" " * (width + 2) + "".join(f"{j:>{cw}d}" for j in range(len(names))))
    for i, name in enumerate(names):
        lines.append(f"  {name:<{width}}" + "".join(f"{c:>{cw}d}" for c in cm[i]))
    return "\n".join(lines)


def load_cifar(
    settings: dict[str, Any],
    data_dir: str | None = None,
    subtract_mean: bool = True,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """CIFAR-10 splits sized by ``settings`` (as ``settings['dtype']``) and a data summary."""
    from .data import get_CIFAR10_data, resolve_data_dir

    root = resolve_data_dir(data_dir, download=True, progress=progress)
    data = get_CIFAR10_data(
        num_training=settings["num_training"],
        num_validation=settings["num_validation"],
        num_test=settings["num_test"],
        subtract_mean=subtract_mean,
        data_dir=root,
    )
    dtype = np.dtype(settings["dtype"])
    for key in ("X_train", "X_val", "X_test"):
        data[key] = data[key].astype(dtype, copy=False)
    info = {
        "data_dir": str(Path(root).resolve()),
        "num_training": int(len(data["y_train"])),
        "num_validation": int(len(data["y_val"])),
        "num_test": int(len(data["y_test"])),
        "input_dim": [int(s) for s in data["X_train"].shape[1:]],
        "class_names": [str(n) for n in data["class_names"]],
    }
    if subtract_mean:
        info["mean_image"] = np.asarray(data["mean_image"], dtype=np.float32)
    return data, info


class RunFolder:
    """Paths and atomic readers/writers of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.best = self.path / "best_model.npz"
        self.last = self.path / "last_model.npz"
        self.checkpoint = self.path / "checkpoint.npz"
        self.preprocess = self.path / "preprocess.npz"

    def holds_run(self) -> bool:
        return self.config.exists() or self.checkpoint.exists()

    def create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise CLIError(f"{self.path} exists and is not a folder")
        self.path.mkdir(parents=True, exist_ok=True)

    def data_dir(self, override: str | None, config: dict[str, Any] | None) -> str | None:
        """``override``, else the run's data folder while it exists, else None (the default)."""
        if override is not None or config is None:
            return override
        stored = config.get("data", {}).get("data_dir")
        return stored if stored and Path(stored).is_dir() else None

    def _need(self, path: Path, what: str) -> None:
        if not self.path.is_dir():
            raise CLIError(f"run folder not found: {self.path}")
        if not path.is_file():
            raise CLIError(f"{self.path} is not a complete run folder: no {path.name} ({what})")

    def read_config(self, need_checkpoint: bool = False) -> dict[str, Any]:
        self._need(self.config, "written when 'nndl train' starts")
        if need_checkpoint:
            self._need(self.checkpoint, "written at the end of each epoch")
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CLIError(f"{self.config} is not valid JSON: {exc}") from None

    def write_json(self, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(self.path / name, text.encode("utf-8"))

    def write_config(self, config: dict[str, Any]) -> None:
        self.write_json(self.config.name, config)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def write_metrics(self, records: Sequence[dict[str, Any]]) -> None:
        # Rewritten whole (it is small) so that a crash never leaves half a line.
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_bytes(self.metrics, text.encode("utf-8"))

    def write_preprocess(
        self, mean_image: np.ndarray, class_names: Sequence[str], dtype: str
    ) -> None:
        atomic_savez(
            self.preprocess,
            mean_image=np.asarray(mean_image, dtype=np.float32),
            class_names=np.array(list(class_names), dtype=str),
            dtype=np.array(str(dtype)),
        )

    def read_preprocess(self) -> dict[str, Any]:
        self._need(self.preprocess, "written when 'nndl train' starts")
        with np.load(self.preprocess, allow_pickle=False) as f:
            return {
                "mean_image": f["mean_image"],
                "class_names": [str(n) for n in f["class_names"]],
                "dtype": str(f["dtype"]),
            }

    def load_model(self, last: bool = False) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """(model, extra, preprocess) of the best (or last) model of this run."""
        path = self.last if last else self.best
        self._need(path, "written at the end of each epoch")
        pre = self.read_preprocess()
        model, extra = load_model(path)
        return model, dict(extra or {}), pre


def load_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Images as float32 ``(N, 3, H, W)`` in [0, 255]: RGB, resized to ``size`` (H, W)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise CLIError("reading images needs Pillow: pip install 'nndl[cli]'") from exc
    height, width = size
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (width, height):
                    # LANCZOS low-pass filters while shrinking, so large photos do not alias.
                    im = im.resize((width, height), Image.Resampling.LANCZOS)
                out.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1))
        except FileNotFoundError:
            raise CLIError(f"image not found: {p}") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CLIError(f"cannot read image {p}: {exc}") from None
    return np.stack(out)
