"""The run folder that ``nndl train`` writes and ``nndl evaluate`` / ``predict`` read.

A run folder holds (every file written atomically: temp file beside it + ``os.replace``):

- ``config.json``: the settings (every flag, defaults filled in), the model's registry
  name and constructor config, the data (folder, split sizes, class names, input
  shape), nndl / NumPy / Python versions, and one entry per ``--resume``;
- ``metrics.jsonl``: one JSON object per finished epoch: ``epoch``, ``iteration``,
  ``loss`` (mean training loss of the epoch), ``train_acc``, ``val_acc`` (null without a
  validation split), ``lr``,
  ``elapsed`` (training seconds since the run began, summed over resumes);
- ``best_model.npz`` / ``last_model.npz``: :func:`nndl.models.save_model` files of
  the best-validation and the latest epoch (``extra``: epoch, iteration, accuracies);
- ``preprocess.npz``: ``mean_image`` (C, H, W) subtracted from every input, with
  ``--normalize channel`` also ``mean`` and ``std`` (C,) (then ``(x - mean) / std``),
  ``class_names``, ``dtype`` and ``dataset`` (the --dataset name or folder; absent in
  runs before nndl had other data sets: cifar10), so that ``predict`` prepares images
  as training did (the mean image's shape is the run's channels, height and width);
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
from ..io.jsonfile import JSONLimitError, loads_bounded
from ..models import load_model
from .errors import CLIError, read_text

__all__ = ["RunFolder", "LOCK_NAME", "OWN_FILES", "ALLOW_NONFINITE_HELP"]

LOCK_NAME = ".lock"

ALLOW_NONFINITE_HELP = (
    "load the model even if its weights (or preprocess.npz's mean image) hold NaN or "
    "infinite values, to inspect it; without it such a model is refused, since it "
    "predicts nan for every image"
)

# Every file nndl writes into a run folder: no command's output may land on one of them.
OWN_FILES = (
    "config.json", "metrics.jsonl", "best_model.npz", "last_model.npz", "checkpoint.npz",
    "preprocess.npz", LOCK_NAME, "evaluation.json", "loss.png", "accuracy.png",
    "val_acc_vs_time.png", "lr_schedule.png", "filters.png", "confusion_matrix.png",
)  # fmt: skip


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

    def refuse_own_file(self, output: Path, flag: str) -> None:
        """Refuse ``output`` if it is one of the run folder's own files (:data:`OWN_FILES`),
        by any name: the resolved paths are compared (symlinks, ``..``), and for files that
        exist ``os.path.samefile`` (hard links)."""
        target = os.path.realpath(output)
        for name in OWN_FILES:
            own = self.path / name
            if target == os.path.realpath(own) or _same_file(output, own):
                raise CLIError(
                    f"{flag} {output} is {own}, a file of the run folder {self.path}; "
                    "choose another file name"
                )

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
            config = loads_bounded(read_text(self.config), str(self.config))
        except JSONLimitError as exc:
            raise CLIError(str(exc)) from None
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
            lines = read_text(self.metrics).splitlines()
            records = [loads_bounded(line, str(self.metrics)) for line in lines if line.strip()]
        except JSONLimitError as exc:
            raise CLIError(str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CLIError(f"{self.metrics} is not valid JSON lines: {exc}") from None
        for i, r in enumerate(records, 1):
            if not (
                isinstance(r, dict)
                and _is_int(r.get("epoch"))
                and (r.get("val_acc") is None or _is_number(r.get("val_acc")))
                and _is_number(r.get("elapsed"))
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
        self,
        mean_image: np.ndarray,
        class_names: Sequence[str],
        dtype: str,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        dataset: str = "cifar10",
    ) -> None:
        channel = {} if mean is None else {"mean": np.asarray(mean, np.float32),
                                           "std": np.asarray(std, np.float32)}  # fmt: skip
        atomic_savez(
            self.preprocess,
            mean_image=np.asarray(mean_image, dtype=np.float32),
            class_names=np.array(list(class_names), dtype=str),
            dtype=np.array(str(dtype)),
            dataset=np.array(str(dataset)),
            **channel,
        )

    def read_preprocess(self, allow_nonfinite: bool = False) -> dict[str, Any]:
        self._need(self.preprocess, "written when 'nndl train' starts")
        fn = "read_preprocess"
        with NpzReader(fn, self.preprocess) as f:
            mean_image, names = f.array("mean_image"), f.array("class_names", "U")
            dtype = str(f.array("dtype", "U"))
            channel = "mean" in f.headers or "std" in f.headers
            mean = f.array("mean") if channel else None
            std = f.array("std") if channel else None
            dataset = str(f.array("dataset", "U")) if "dataset" in f.headers else "cifar10"
        if mean_image.ndim != 3 or names.ndim != 1 or dtype not in ("float32", "float64"):
            raise CLIError(
                f"{self.preprocess} holds mean_image {mean_image.shape}, class_names "
                f"{names.shape} and dtype {dtype!r}; expected (C, H, W), (K,) and a float type"
            )
        if not allow_nonfinite and not np.isfinite(mean_image).all():
            raise CLIError(
                f"{self.preprocess} holds a mean_image with NaN or infinite values (every "
                "prepared image would be nan); --allow-nonfinite reads it anyway"
            )
        if channel and not _channel_stats(mean, std, mean_image.shape[0]):
            raise CLIError(
                f"{self.preprocess} holds per-channel mean {getattr(mean, 'shape', None)} and "
                f"std {getattr(std, 'shape', None)}; expected {mean_image.shape[0]} finite "
                "values each, every std > 0"
            )
        return {"mean_image": mean_image, "class_names": [str(n) for n in names],
                "dtype": dtype, "mean": mean, "std": std, "dataset": dataset}  # fmt: skip

    def load_model(
        self, last: bool = False, allow_nonfinite: bool = False
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """(model, extra, preprocess) of the best (or last) model of this run, checked to
        take the preprocessed images and give one score per class name (and, unless
        ``allow_nonfinite``, to hold finite weights)."""
        path = self.last if last else self.best
        self._need(path, "written at the end of each epoch")
        pre = self.read_preprocess(allow_nonfinite)
        model, extra = load_model(path, allow_nonfinite=allow_nonfinite)
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


def _channel_stats(mean: Any, std: Any, channels: int) -> bool:
    """Per-channel statistics that normalise: (C,) each, finite, every std > 0."""
    if mean is None or std is None or mean.shape != (channels,) or std.shape != (channels,):
        return False
    return bool(np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (or cannot be looked at)
        return False


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
