"""Training curves, filter grids and confusion matrices as matplotlib Figures.

Every function takes plain data (lists or arrays), builds a ``matplotlib.figure.Figure``
without going through ``pyplot`` (so it never selects a backend or touches global
figure state), and returns it; given ``path`` it also writes a PNG atomically. In a
notebook the returned Figure displays itself; a script may call ``fig.savefig``.

matplotlib is imported inside the functions: it belongs to the ``cli`` extra
(``pip install 'nndl[cli]'``), and ``import nndl.plots`` works without it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io.atomic import atomic_open

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

PathLike = str | os.PathLike


def _new_figure(fn: str, figsize: tuple[float, float], layout: str | None = None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{fn}: plotting needs matplotlib; install it with: pip install 'nndl[cli]'"
        ) from exc
    # The default margins suit the simple plots; a layout engine doubles the drawing time.
    return Figure(figsize=figsize, layout=layout)


def save_figure(fig: Figure, path: PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file beside it + ``os.replace``).

    A reader never sees a half-written image, even when training is interrupted while a
    plot is being saved.
    """
    path = Path(path)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _as_1d(fn: str, name: str, values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{fn}: expected {name} to be a 1-d sequence, got shape {a.shape}")
    return a


def _same_length(fn: str, name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{fn}: expected {name_a} and {name_b} of the same length, got {len(a)} and {len(b)}"
        )


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start); same length."""
    a = _as_1d("moving_average", "values", values)
    if window < 1:
        raise ValueError(f"moving_average: expected window >= 1, got {window}")
    if len(a) == 0:
        return a
    c = np.cumsum(np.insert(a, 0, 0.0))
    idx = np.arange(1, len(a) + 1)
    start = np.maximum(idx - window, 0)
    return (c[idx] - c[start]) / (idx - start)


def plot_loss(
    loss_history: Sequence[float],
    iterations_per_epoch: int | None = None,
    path: PathLike | None = None,
    smooth: int | None = None,
) -> Figure:
    """Training loss per iteration, with a moving average and epoch boundaries.

    ``smooth`` is the moving-average window (default: about 2% of the iterations).
    """
    fn = "plot_loss"
    loss = _as_1d(fn, "loss_history", loss_history)
    fig = _new_figure(fn, (7, 4))
    ax = fig.add_subplot()
    it = np.arange(1, len(loss) + 1)
    window = smooth if smooth is not None else max(1, len(loss) // 50)
    smoothed = window > 1 and len(loss) > window
    # The raw curve fades into the background only when a smoothed one is drawn over it.
    alpha = 0.3 if smoothed else 1.0
    ax.plot(it, loss, color="tab:blue", alpha=alpha, linewidth=0.8, label="loss")
    if smoothed:
        ax.plot(it, moving_average(loss, window), color="tab:blue", label=f"mean of {window}")
    if iterations_per_epoch and len(loss) > iterations_per_epoch:
        for x in range(iterations_per_epoch, len(loss), iterations_per_epoch):
            ax.axvline(x + 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(loc="upper right")
    return _finish(fig, path)


def plot_accuracy(
    epochs: Sequence[float],
    train_acc: Sequence[float],
    val_acc: Sequence[float],
    path: PathLike | None = None,
) -> Figure:
    """Train and validation accuracy per epoch (two lines, labelled ``train`` and ``val``)."""
    fn = "plot_accuracy"
    ep = _as_1d(fn, "epochs", epochs)
    tr = _as_1d(fn, "train_acc", train_acc)
    va = _as_1d(fn, "val_acc", val_acc)
    _same_length(fn, "epochs", ep, "train_acc", tr)
    _same_length(fn, "epochs", ep, "val_acc", va)
    fig = _new_figure(fn, (6, 4))
    ax = fig.add_subplot()
    ax.plot(ep, tr, marker="o", label="train")
    ax.plot(ep, va, marker="o", label="val")
    if len(va):
        best = int(np.argmax(va))
        ax.annotate(
            f"best val {va[best]:.3f}",
            (ep[best], va[best]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_val_acc_vs_time(
    elapsed: Sequence[float],
    val_acc: Sequence[float],
    path: PathLike | None = None,
) -> Figure:
    """Validation accuracy against wall-clock seconds since training began."""
    fn = "plot_val_acc_vs_time"
    t = _as_1d(fn, "elapsed", elapsed)
    va = _as_1d(fn, "val_acc", val_acc)
    _same_length(fn, "elapsed", t, "val_acc", va)
    fig = _new_figure(fn, (6, 4))
    ax = fig.add_subplot()
    ax.plot(t, va, marker="o", color="tab:orange", label="val")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy vs time")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def filter_grid(weights: Any, padding: int = 1) -> np.ndarray:
    """Tile conv filters ``(F, C, HH, WW)`` into one image, each filter scaled to [0, 1].

    Filters are normalised one by one (min to 0, max to 1; a constant filter becomes
    0.5) so that small and large filters are equally visible. With C == 3 the result is
    RGB ``(rows*(HH+p)-p, cols*(WW+p)-p, 3)``; otherwise channel 0 is shown in grey and
    the result is 2-d. The padding between tiles is 1.0 (white).
    """
    fn = "filter_grid"
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"{fn}: expected weights of shape (F, C, HH, WW), got shape {w.shape}")
    if padding < 0:
        raise ValueError(f"{fn}: expected padding >= 0, got {padding}")
    F, C, HH, WW = w.shape
    tiles = w.transpose(0, 2, 3, 1) if C == 3 else w[:, 0]
    lo = tiles.reshape(F, -1).min(axis=1)
    hi = tiles.reshape(F, -1).max(axis=1)
    span = hi - lo
    shape = (F,) + (1,) * (tiles.ndim - 1)
    safe = np.where(span > 0, span, 1.0).reshape(shape)
    tiles = np.where(span.reshape(shape) > 0, (tiles - lo.reshape(shape)) / safe, 0.5)
    cols = math.ceil(math.sqrt(F)) if F else 1
    rows = math.ceil(F / cols) if F else 1
    grid = np.ones(
        (rows * (HH + padding) - padding, cols * (WW + padding) - padding) + tiles.shape[3:]
    )
    for i in range(F):
        r, c = divmod(i, cols)
        y, x = r * (HH + padding), c * (WW + padding)
        grid[y : y + HH, x : x + WW] = tiles[i]
    return grid


def plot_filters(
    weights: Any, path: PathLike | None = None, padding: int = 1, title: str | None = None
) -> Figure:
    """First-layer filters ``(F, C, HH, WW)`` as an image grid (see :func:`filter_grid`)."""
    grid = filter_grid(weights, padding=padding)
    fig = _new_figure("plot_filters", (5, 5))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=None if grid.ndim == 3 else "gray", interpolation="nearest")
    ax.set_axis_off()
    F = np.shape(weights)[0]
    ax.set_title(title or f"First-layer filters ({F})")
    return _finish(fig, path)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts ``cm[i, j]`` of examples of true class i predicted as j (int64)."""
    fn = "confusion_matrix"
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(
            f"{fn}: expected y_true and y_pred as vectors of equal length, got shapes "
            f"{t.shape} and {p.shape}"
        )
    for name, a in (("y_true", t), ("y_pred", p)):
        if len(a) and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(
                f"{fn}: expected {name} in [0, {num_classes}), got {a.min()}..{a.max()}"
            )
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t.astype(np.int64), p.astype(np.int64)), 1)
    return cm


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str] | None = None,
    path: PathLike | None = None,
    normalize: bool = True,
) -> Figure:
    """Confusion matrix as a heat map (rows: true class, columns: predicted class).

    With ``normalize`` the colours are row fractions (per-class recall) and each cell
    shows the fraction; the raw counts stay in the matrix passed in.
    """
    fn = "plot_confusion_matrix"
    m = np.asarray(cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{fn}: expected a square matrix, got shape {m.shape}")
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{fn}: expected {k} class names, got {len(names)}")
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig = _new_figure(fn, (1.0 + 0.6 * k, 0.8 + 0.55 * k), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = m.max() if m.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
            color = "white" if top and m[i, j] > 0.6 * top else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_title("Confusion matrix")
    return _finish(fig, path)


def plot_lr_schedule(
    learning_rates: Sequence[float],
    iterations_per_epoch: int | None = None,
    path: PathLike | None = None,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """The learning rate of each update (``learning_rates[i]`` is update ``i + 1``'s),
    with epoch boundaries; ``log`` draws it on a log scale (for step and exponential
    decay). ``nndl.schedules.Schedule.multipliers`` gives the values of a schedule."""
    fn = "plot_lr_schedule"
    lr = _as_1d(fn, "learning_rates", learning_rates)
    if log and len(lr) and lr.min() <= 0:
        raise ValueError(f"{fn}: a log scale needs learning rates > 0, got min {lr.min()}")
    fig = _new_figure(fn, (6, 3.5))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(lr) + 1), lr, color="tab:green", label="learning rate")
    if iterations_per_epoch and len(lr) > iterations_per_epoch:
        for x in range(iterations_per_epoch, len(lr), iterations_per_epoch):
            ax.axvline(x + 0.5, color="0.85", linewidth=0.8, zorder=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.set_title(title or "Learning-rate schedule")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


__all__ = [
    "save_figure",
    "moving_average",
    "plot_loss",
    "plot_accuracy",
    "plot_val_acc_vs_time",
    "filter_grid",
    "plot_filters",
    "confusion_matrix",
    "plot_confusion_matrix",
    "plot_lr_schedule",
]
