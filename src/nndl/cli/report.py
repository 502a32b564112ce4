"""What ``nndl evaluate`` and ``nndl predict`` compute and print: scores in batches,
probabilities, accuracy per class and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..plots import confusion_matrix
from .errors import CLIError

__all__ = [
    "batched_scores",
    "softmax",
    "evaluate_scores",
    "evaluation_report",
    "require_matplotlib",
]


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
    tta = result.get("tta", "none")
    lines = [
        f"{result['model_file']} (epoch {result['epoch']}) on the {split} split, "
        f"{result['num_images']} images"
        + ("" if tta == "none" else f", test-time augmentation {tta}"),
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


def require_matplotlib(alternative: str | None = None) -> None:
    """Select the non-interactive Agg backend, or explain how to install matplotlib."""
    try:
        import matplotlib
    except ImportError as exc:
        hint = f" (or pass {alternative})" if alternative else ""
        raise CLIError(f"plots need matplotlib: pip install 'nndl[cli]'{hint}") from exc
    # Only the command line picks a backend: it writes PNGs and must work without a display.
    matplotlib.use("Agg")
