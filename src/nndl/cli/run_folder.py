"""The run folder that ``nndl train`` writes and ``nndl evaluate`` / ``predict`` read.

A run folder holds (every file written atomically: temp file beside it + ``os.replace``):

- ``config.json``: the settings (every flag, defaults filled in), the model's registry
  name and constructor config, the data (folder, split sizes, class names, input
  shape), nndl / NumPy / Python versions, and one entry per ``--resume``;
- ``metrics.jsonl``: one JSON object per finished epoch: ``epoch``, ``iteration``,
  ``loss`` (mean training loss of the epoch), ``train_acc``, ``val_acc``, ``lr``,
  ``elapsed`` (training seconds since the run began, summed over resumes);
- ``best_model.npz`` / ``last_model.npz``: :func:`nndl.models.save_model` files of
  the best-validation and the latest epoch (``extra``: epoch, iteration, accuracies);
- ``preprocess.npz``: ``mean_image`` (C, H, W) subtracted from every input,
  ``class_names`` and ``dtype``, so that ``predict`` prepares images as training did;
- ``checkpoint.npz``: :meth:`nndl.solver.Solver.save_checkpoint` at each epoch end,
  which ``nndl train --resume`` continues from;
- ``loss.png``, ``accuracy.png``, ``val_acc_vs_time.png``, ``filters.png``;
- after ``nndl evaluate``: ``evaluation.json`` (and ``confusion_matrix.png`` with --plot);
- ``.lock``: the lock ``nndl train`` holds for its whole run (:meth:`RunFolder.lock`),
  so that two runs never write into one folder.

Every file read back is checked: a truncated or corrupt file, or one that does not fit
the rest of the folder, is a :class:`CLIError` or ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..io.checkpoint import NpzReader, atomic_savez
from ..models import load_model

LOCK_NAME = ".lock"
# config.json and metrics.jsonl are small; a far larger one is not ours (and is not read).
MAX_TEXT_BYTES = 16 << 20


class CLIError(Exception):
    """A usage error the command line reports as ``nndl CMD: error: ...`` (exit status 2)."""


def cli_path(value: str | os.PathLike, what: str) -> Path:
    """A path given on the command line: ``~`` expanded, an empty one refused.

    An empty value is almost always an unset shell variable; taken as the current folder
    it would scatter a run's files there.
    """
    if not os.fspath(value).strip():
        raise CLIError(f"{what} is empty (an unset shell variable?); expected a folder")
    return Path(value).expanduser()


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
    from ..plots import confusion_matrix

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
    from ..data import data_fingerprint, get_CIFAR10_data, resolve_data_dir

    root = resolve_data_dir(data_dir, download=True, progress=progress)
    data = get_CIFAR10_data(
        num_training=settings["num_training"],
        num_validation=settings["num_validation"],
        num_test=settings["num_test"],
        subtract_mean=subtract_mean,
        data_dir=root,
    )
    fingerprint = data_fingerprint(data)  # of the float32 arrays, whatever the dtype
    dtype = np.dtype(settings["dtype"])
    for key in ("X_train", "X_val", "X_test"):
        data[key] = data[key].astype(dtype, copy=False)
    info = {
        "data_dir": str(Path(root).resolve()),
        "fingerprint": fingerprint,
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
    """Paths and checked readers/writers of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.best = self.path / "best_model.npz"
        self.last = self.path / "last_model.npz"
        self.checkpoint = self.path / "checkpoint.npz"
        self.preprocess = self.path / "preprocess.npz"
        self.lock_file = self.path / LOCK_NAME

    def holds_run(self) -> bool:
        """Whether the folder holds training progress (a checkpoint) a new run would lose.

        A run stopped before its first checkpoint (killed, out of memory, a non-finite
        loss at the first step) leaves only files written at the start; running the same
        command again starts it afresh.
        """
        return self.checkpoint.exists()

    def create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise CLIError(f"--out {self.path} exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(
                f"--out {self.path}: cannot create the folder ({exc.strerror})"
            ) from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Create the folder and hold its lock for the ``with`` block, or refuse at once.

        The lock is an exclusive ``flock`` on ``.lock`` (``msvcrt.locking`` on Windows); the
        operating system drops it when the process ends, however it ends, so a killed run
        never leaves a stale lock. The file stays, empty and unchanged: removing it would
        let another process lock a file that no longer has a name.
        """
        self.create()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(fd):
                raise CLIError(
                    f"{self.path} is in use by another 'nndl train' (it holds "
                    f"{self.lock_file}); wait for it to finish or choose another --out"
                )
            self._sweep_temp_files()
            yield
        finally:
            os.close(fd)  # releases the lock

    def _sweep_temp_files(self) -> None:
        # Temporary files of atomic writes cut short by a kill; with the lock held no
        # writer is running, so any that are left are stale.
        for tmp in self.path.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)

    def data_dir(self, override: str | None, config: dict[str, Any] | None) -> str | None:
        """``override``, else the run's data folder while it exists, else None (the default)."""
        if override is not None or config is None:
            return override
        stored = config.get("data", {}).get("data_dir")
        return stored if isinstance(stored, str) and Path(stored).is_dir() else None

    def _need(self, path: Path, what: str) -> None:
        if not self.path.is_dir():
            raise CLIError(f"run folder not found: {self.path}")
        if not path.is_file():
            raise CLIError(f"{self.path} is not a complete run folder: no {path.name} ({what})")

    def read_config(self) -> dict[str, Any]:
        """config.json, checked to hold a ``settings`` object (``data`` and ``resumed``, if
        there, an object and a list); the settings themselves are checked by the command."""
        self._need(self.config, "written when 'nndl train' starts")
        try:
            config = json.loads(_read_text(self.config))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CLIError(f"{self.config} is not valid JSON: {exc}") from None
        if not isinstance(config, dict) or not isinstance(config.get("settings"), dict):
            raise CLIError(f"{self.config} holds no 'settings' object; it is not an nndl run")
        if not isinstance(config.get("data", {}), dict):
            raise CLIError(f"{self.config}: 'data' is not an object")
        if not isinstance(config.get("resumed", []), list):
            raise CLIError(f"{self.config}: 'resumed' is not a list")
        return config

    def write_json(self, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(self.path / name, text.encode("utf-8"))

    def write_config(self, config: dict[str, Any]) -> None:
        self.write_json(self.config.name, config)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl, each checked to hold the fields a resume reads."""
        if not self.metrics.exists():
            return []
        try:
            lines = _read_text(self.metrics).splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CLIError(f"{self.metrics} is not valid JSON lines: {exc}") from None
        for i, r in enumerate(records, 1):
            if not (
                isinstance(r, dict)
                and _is_int(r.get("epoch"))
                and all(_is_number(r.get(k)) for k in ("val_acc", "elapsed"))
            ):
                raise CLIError(
                    f"{self.metrics}: record {i} is not an epoch record (epoch, val_acc, elapsed)"
                )
        return records

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
        fn = "read_preprocess"
        with NpzReader(fn, self.preprocess) as f:
            mean_image, names = f.array("mean_image"), f.array("class_names", "U")
            dtype = str(f.array("dtype", "U"))
        if mean_image.ndim != 3 or names.ndim != 1 or dtype not in ("float32", "float64"):
            raise CLIError(
                f"{self.preprocess} holds mean_image {mean_image.shape}, class_names "
                f"{names.shape} and dtype {dtype!r}; expected (C, H, W), (K,) and a float type"
            )
        return {"mean_image": mean_image, "class_names": [str(n) for n in names], "dtype": dtype}

    def load_model(self, last: bool = False) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """(model, extra, preprocess) of the best (or last) model of this run, checked to
        take the preprocessed images and give one score per class name."""
        path = self.last if last else self.best
        self._need(path, "written at the end of each epoch")
        pre = self.read_preprocess()
        model, extra = load_model(path)
        config = getattr(model, "config", {})
        input_dim, num_classes = config.get("input_dim"), config.get("num_classes")
        shape = pre["mean_image"].shape
        if input_dim is not None and (
            [int(d) for d in np.atleast_1d(input_dim)] not in ([*shape], [math.prod(shape)])
        ):
            raise CLIError(
                f"{path} takes inputs of shape {input_dim} but {self.preprocess} prepares "
                f"images of shape {list(shape)}"
            )
        if num_classes is not None and num_classes != len(pre["class_names"]):
            raise CLIError(
                f"{path} scores {num_classes} classes but {self.preprocess} names "
                f"{len(pre['class_names'])}"
            )
        return model, dict(extra or {}), pre


def _read_text(path: Path) -> str:
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise CLIError(f"{path} is larger than {MAX_TEXT_BYTES >> 20} MiB; it is not an nndl file")
    return path.read_text(encoding="utf-8")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another process has it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# Pillow modes beyond 8 bits per channel, converted by their own range (Pillow's
# convert('RGB') would clip 16-bit values at 255 and float values in [0, 1] to 0 or 1).
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _as_float_rgb(im: Any, path: Any) -> np.ndarray | None:
    """A high-depth grayscale image as float (H, W, 3) in [0, 255]; None for 8-bit modes."""
    if im.mode not in (*_UINT16_MODES, "I", "F"):
        return None
    a = np.asarray(im, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise CLIError(f"cannot read image {path}: it holds non-finite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255  # float images conventionally span [0, 1]
    elif im.mode == "F" and lo >= 0 and hi <= 255:
        pass
    elif im.mode != "F" and lo >= 0 and hi <= 65535:
        a = a / 257  # 16-bit: 65535 is white, and 257 * v is the 16-bit copy of 8-bit v
    else:
        raise CLIError(
            f"cannot read image {path}: {im.mode} values span [{lo:g}, {hi:g}]; expected "
            "[0, 1] or [0, 255] (float) or [0, 65535] (16-bit)"
        )
    return np.repeat(a.astype(np.float32)[:, :, None], 3, axis=2)


def _resize_float(a: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(a[:, :, c]), mode="F").resize(
                (width, height), Image.Resampling.LANCZOS
            )
        )
        for c in range(a.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0, 255)  # LANCZOS overshoots at edges


def load_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Images as float32 ``(N, 3, H, W)`` in [0, 255]: RGB, resized to ``size`` (H, W).

    8-bit images (and 16-bit colour ones, which Pillow reduces exactly) are converted by
    Pillow; 16-bit grayscale by 65535 and float images by [0, 1] (or [0, 255]), so a
    16-bit or float copy of an image is read as the image itself.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise CLIError("reading images needs Pillow: pip install 'nndl[cli]'") from exc
    height, width = size
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                a = _as_float_rgb(im, p)
                if a is not None:
                    if a.shape[:2] != (height, width):
                        a = _resize_float(a, width, height)
                    out.append(a.transpose(2, 0, 1))
                    continue
                im = im.convert("RGB")
                if im.size != (width, height):
                    # LANCZOS low-pass filters while shrinking, so large photos do not alias.
                    im = im.resize((width, height), Image.Resampling.LANCZOS)
                out.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1))
        except FileNotFoundError:
            raise CLIError(f"image not found: {p}") from None
        except Image.DecompressionBombError as exc:
            raise CLIError(f"cannot read image {p}: {exc}") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CLIError(f"cannot read image {p}: {exc}") from None
    return np.stack(out)
