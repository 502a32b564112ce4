"""Classification losses on scores: softmax (cross-entropy, optional label smoothing)
and multiclass SVM. Each returns ``(loss, dx)``.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..validation import (
    check_float,
    check_labels,
    check_ndim,
    check_nonempty,
    check_probability,
)


def softmax_loss(x, y, label_smoothing: float = 0.0):
    """Mean cross-entropy of softmax(x) against labels.

    Shapes: x (N, C) scores, y (N,) integer labels in [0, C) -> (loss, dx (N, C)).
    Scores are shifted by their row maximum, so logits of +-1000 stay finite.

    ``label_smoothing`` (eps in [0, 1]) replaces each one-hot target by
    ``(1 - eps) * onehot(y) + eps / C``, as PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``
    does: ``loss = -mean_n[(1 - eps) * log p_y + eps / C * sum_k log p_k]`` and
    ``dx = (softmax(x) - target) / N``. With eps = 0 it is the plain cross-entropy.
    """
    fn = "softmax_loss"
    check_ndim(fn, "x", x, 2, "(N, C)")
    check_float(fn, "x", x)
    N, C = x.shape
    check_nonempty(fn, x)
    check_labels(fn, y, N, C)
    eps = check_probability(fn, "label_smoothing", label_smoothing)
    xp = get_array_module(x)
    shifted = x - x.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_z
    rows = xp.arange(N)
    loss = -log_probs[rows, y].sum() / N
    dx = xp.exp(log_probs)
    if eps:
        loss = (1 - eps) * loss - eps / C * log_probs.sum() / N
        dx -= eps / C
        dx[rows, y] -= 1 - eps
    else:
        dx[rows, y] -= 1
    dx /= N
    return float(loss), dx


def svm_loss(x, y):
    """Mean multiclass hinge loss (margin 1).

    Shapes: x (N, C) scores, y (N,) integer labels in [0, C) -> (loss, dx (N, C)).
    """
    fn = "svm_loss"
    check_ndim(fn, "x", x, 2, "(N, C)")
    check_float(fn, "x", x)
    N, C = x.shape
    check_nonempty(fn, x)
    check_labels(fn, y, N, C)
    xp = get_array_module(x)
    rows = xp.arange(N)
    correct = x[rows, y][:, None]
    margins = xp.maximum(0, x - correct + 1)
    margins[rows, y] = 0
    loss = margins.sum() / N
    dx = (margins > 0).astype(x.dtype)
    dx[rows, y] -= dx.sum(axis=1)
    dx /= N
    return float(loss), dx


__all__ = [
    "softmax_loss",
    "svm_loss",
]
