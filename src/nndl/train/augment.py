"""Data augmentation on whole batches, and test-time augmentation.

Every function takes a batch ``x`` of shape ``(N, C, H, W)``, returns a new array of the
same shape and dtype (the input is never modified) and draws every random number from
the ``numpy.random.Generator`` it is given: no global random state. The work is a few
vectorised NumPy calls per batch, not a loop over images.

An augmentation pipeline is a JSON-serialisable list of steps, each a registry name or
a dict (see :data:`AUGMENTATIONS`)::

    [{"name": "random_crop", "pad": 2, "mode": "reflect"},
     {"name": "alternating_flip"},
     {"name": "cutout", "size": 8}]

:class:`nndl.train.loader.BatchLoader` applies a pipeline to a training set's
minibatches, deterministically, in a background thread.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import check_count, check_ndim
from .specs import Check, is_fraction, parse_spec

__all__ = [
    "PAD_MODES",
    "flip_horizontal",
    "random_flip",
    "alternating_flip",
    "translate",
    "random_crop",
    "cutout",
    "normalize",
    "AUGMENTATIONS",
    "AugmentContext",
    "Augmentation",
    "make_augmentation",
    "TTA_MODES",
    "tta_views",
    "tta_predict",
]

# How random_crop and translate fill the border: mirror the image without repeating the
# edge pixel (NumPy's and PyTorch's "reflect"), or zeros.
PAD_MODES = {"reflect": "reflect", "zero": "constant"}


def _check_batch(fn: str, x: Any) -> None:
    check_ndim(fn, "x", x, 4, "(N, C, H, W)")


def _check_mode(fn: str, mode: Any) -> str:
    if mode not in PAD_MODES:
        raise ValueError(f"{fn}: expected mode to be one of {sorted(PAD_MODES)}, got {mode!r}")
    return PAD_MODES[mode]


def _pad(x: np.ndarray, pad: int, mode: str) -> np.ndarray:
    widths = ((0, 0), (0, 0), (pad, pad), (pad, pad))
    return np.pad(x, widths, mode=mode) if pad else x


# --- flips -------------------------------------------------------------------------------


def flip_horizontal(x: np.ndarray) -> np.ndarray:
    """Mirror every image left to right (a copy). Applying it twice gives ``x`` back."""
    _check_batch("flip_horizontal", x)
    return x[..., ::-1].copy()


def _flip_where(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[mask] = x[mask][..., ::-1]
    return out


def random_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image independently with probability ``p``."""
    fn = "random_flip"
    _check_batch(fn, x)
    if not is_fraction(p):
        raise ValueError(f"{fn}: expected p in [0, 1], got {p!r}")
    return _flip_where(x, rng.random(len(x)) < p)


def alternating_flip(x: np.ndarray, bits: np.ndarray, epoch: int) -> np.ndarray:
    """airbench94's alternating flip: image i is mirrored in epoch ``e`` exactly when
    ``bits[i]`` differs from ``e % 2``.

    ``bits`` are the images' own random bits (drawn once per training image, then looked
    up by index): in epoch 0 each image is mirrored with probability 1/2, and from then on
    it alternates, so over any two consecutive epochs every image is seen both ways.
    """
    fn = "alternating_flip"
    _check_batch(fn, x)
    bits = np.asarray(bits)
    if bits.dtype != np.bool_ or bits.shape != (len(x),):
        raise ValueError(
            f"{fn}: expected bits as a bool vector of length {len(x)}, got {bits.dtype} "
            f"{bits.shape}"
        )
    epoch = check_count(fn, "epoch", epoch, 0)
    return _flip_where(x, bits != bool(epoch % 2))


# --- translations and crops ---------------------------------------------------------------


def translate(x: np.ndarray, dy: int, dx: int, mode: str = "reflect") -> np.ndarray:
    """Shift every image down by ``dy`` and right by ``dx`` pixels (negative: up, left);
    the uncovered border is filled by ``mode`` (``"reflect"`` or ``"zero"``).

    ``out[..., i, j] = x_ext[..., i - dy, j - dx]`` where ``x_ext`` is ``x`` extended
    beyond its edges.
    """
    fn = "translate"
    _check_batch(fn, x)
    np_mode = _check_mode(fn, mode)
    for name, v in (("dy", dy), ("dx", dx)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{fn}: expected {name} to be an int, got {v!r}")
    H, W = x.shape[2:]
    pad = max(abs(dy), abs(dx))
    _check_pad(fn, pad, H, W, np_mode)
    xp = _pad(x, pad, np_mode)
    return xp[..., pad - dy : pad - dy + H, pad - dx : pad - dx + W].copy()


def _check_pad(fn: str, pad: int, H: int, W: int, np_mode: str) -> None:
    if np_mode == "reflect" and pad >= min(H, W):
        raise ValueError(
            f"{fn}: reflect padding needs pad < the image size, got pad {pad} for {H}x{W} images"
        )


def random_crop(
    x: np.ndarray, pad: int, rng: np.random.Generator, mode: str = "reflect"
) -> np.ndarray:
    """Random translation by up to ``pad`` pixels in each direction (a random ``H x W``
    crop of the image padded by ``pad`` on every side, ``mode`` ``"reflect"`` or
    ``"zero"``), independently for each image; each offset in ``[-pad, pad]`` is equally
    likely. With ``pad = 0`` it returns an unchanged copy.
    """
    fn = "random_crop"
    _check_batch(fn, x)
    pad = check_count(fn, "pad", pad, 0)
    np_mode = _check_mode(fn, mode)
    N, _, H, W = x.shape
    _check_pad(fn, pad, H, W, np_mode)
    if pad == 0:
        return x.copy()
    offsets = rng.integers(0, 2 * pad + 1, size=(N, 2))
    xp = _pad(x, pad, np_mode)
    out = np.empty_like(x)
    # One strided copy per distinct offset ((2 pad + 1)^2 of them), not one per image.
    code = offsets[:, 0] * (2 * pad + 1) + offsets[:, 1]
    for c in np.unique(code):
        sel = np.flatnonzero(code == c)
        oy, ox = divmod(int(c), 2 * pad + 1)
        out[sel] = xp[sel, :, oy : oy + H, ox : ox + W]
    return out


# --- cutout and normalisation ---------------------------------------------------------------


def cutout(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Zero a ``size x size`` square in every channel of each image (DeVries & Taylor);
    the square lies wholly inside the image, its corner uniform over the valid places,
    so exactly ``size * size`` pixels of each image are zeroed."""
    fn = "cutout"
    _check_batch(fn, x)
    size = check_count(fn, "size", size, 1)
    N, _, H, W = x.shape
    if size > min(H, W):
        raise ValueError(f"{fn}: expected size <= the image size {H}x{W}, got {size}")
    top = rng.integers(0, H - size + 1, size=N)
    left = rng.integers(0, W - size + 1, size=N)
    rows = np.arange(H)[None, :] - top[:, None]
    cols = np.arange(W)[None, :] - left[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None]
    out = x.copy()
    np.copyto(out, 0, where=inside[:, None])  # (N, 1, H, W): every channel
    return out


def normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Per-channel ``(x - mean[c]) / std[c]`` (see :func:`nndl.data.channel_mean_std`).

    Floating input keeps its dtype; integer input (raw pixels) becomes float32.
    """
    fn = "normalize"
    _check_batch(fn, x)
    C = x.shape[1]
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    if m.shape != (C,) or s.shape != (C,):
        raise ValueError(
            f"{fn}: expected mean and std of length {C} (the channels), got shapes "
            f"{m.shape} and {s.shape}"
        )
    if not np.all(s > 0):
        raise ValueError(f"{fn}: expected every std > 0, got {s.tolist()}")
    dtype = x.dtype if x.dtype.kind == "f" else np.float32
    out = x.astype(dtype, copy=True)
    out -= m.astype(dtype)[:, None, None]
    out /= s.astype(dtype)[:, None, None]
    return out


# --- pipelines from a JSON spec -----------------------------------------------------------


@dataclass(frozen=True)
class AugmentContext:
    """What a pipeline step may use besides the batch: the Generator for this batch,
    the epoch, and the images' alternating-flip bits (None outside a BatchLoader).

    A step in :data:`AUGMENTATIONS` is ``step(x, ctx, *, options) -> new x``; its
    keyword-only parameters are the spec's keys (without a default: required).
    """

    rng: np.random.Generator
    epoch: int = 0
    flip_bits: np.ndarray | None = None


def _crop_step(x, ctx: AugmentContext, *, pad: int = 2, mode: str = "reflect"):
    return random_crop(x, pad, ctx.rng, mode)


def _flip_step(x, ctx: AugmentContext, *, p: float = 0.5):
    return random_flip(x, ctx.rng, p)


def _alternating_flip_step(x, ctx: AugmentContext):
    if ctx.flip_bits is None:
        raise ValueError(
            "alternating_flip: needs each image's flip bit; pass flip_bits, or use a "
            "BatchLoader, which draws them from its seed"
        )
    return alternating_flip(x, ctx.flip_bits, ctx.epoch)


def _cutout_step(x, ctx: AugmentContext, *, size: int):
    return cutout(x, size, ctx.rng)


def _normalize_step(x, ctx: AugmentContext, *, mean: list[float], std: list[float]):
    return normalize(x, mean, std)


AUGMENTATIONS: dict[str, Callable[..., np.ndarray]] = {
    "random_crop": _crop_step,
    "random_flip": _flip_step,
    "alternating_flip": _alternating_flip_step,
    "cutout": _cutout_step,
    "normalize": _normalize_step,
}


def _is_int(v: Any, minimum: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum


def _is_numbers(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(
        isinstance(a, numbers.Real) and not isinstance(a, bool) for a in v
    )


CHECKS: dict[str, Check] = {
    "pad": (lambda v: _is_int(v, 0), "an int >= 0"),
    "mode": (lambda v: v in PAD_MODES, f"one of {sorted(PAD_MODES)}"),
    "p": (is_fraction, "a probability in [0, 1]"),
    "size": (lambda v: _is_int(v, 1), "an int >= 1"),
    "mean": (_is_numbers, "a list of numbers, one per channel"),
    "std": (lambda v: _is_numbers(v) and all(a > 0 for a in v), "a list of numbers > 0"),
}


class Augmentation:
    """A pipeline of augmentation steps built from a spec (see :func:`make_augmentation`).

    ``aug(x, rng, epoch=0, flip_bits=None)`` runs the steps in order on a new array;
    ``aug.spec`` is the complete spec (every default filled in), JSON-serialisable.
    """

    def __init__(self, spec: Sequence[str | Mapping[str, Any]] | None = None) -> None:
        fn = "make_augmentation"
        if spec is None:
            spec = []
        if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
            raise TypeError(
                f"{fn}: expected a list of augmentation steps, got {type(spec).__name__}"
            )
        self.spec: list[dict[str, Any]] = [
            parse_spec(f"{fn}: step {i}", "augmentation", s, AUGMENTATIONS, CHECKS)
            for i, s in enumerate(spec)
        ]

    @property
    def uses_flip_bits(self) -> bool:
        return any(s["name"] == "alternating_flip" for s in self.spec)

    def __call__(
        self,
        x: np.ndarray,
        rng: np.random.Generator,
        epoch: int = 0,
        flip_bits: np.ndarray | None = None,
    ) -> np.ndarray:
        _check_batch("Augmentation", x)
        ctx = AugmentContext(rng, epoch, flip_bits)
        out = x
        for step in self.spec:
            options = {k: v for k, v in step.items() if k != "name"}
            out = AUGMENTATIONS[step["name"]](out, ctx, **options)
        return out.copy() if out is x else out

    def __repr__(self) -> str:
        return f"Augmentation({self.spec!r})"


def make_augmentation(
    spec: Sequence[str | Mapping[str, Any]] | Augmentation | None,
) -> Augmentation:
    """Validate a pipeline spec (a list of step names or dicts; None for no steps) and
    return the :class:`Augmentation`. Unknown names or keys are errors listing the valid
    ones."""
    return spec if isinstance(spec, Augmentation) else Augmentation(spec)


# --- the batch loader -----------------------------------------------------------------

# --- test-time augmentation -------------------------------------------------------------

# The views and weights of each mode; airbench94's "mirror_translate" gives the plain and
# mirrored image half the weight, and their 1-pixel shifts up-left and down-right the rest.
TTA_MODES = ("none", "mirror", "mirror_translate")


def tta_views(x: np.ndarray, mode: str = "mirror") -> list[tuple[np.ndarray, float]]:
    """The test-time views of a batch with their weights (which sum to 1).

    ``"none"``: ``x``. ``"mirror"``: ``x`` and its mirror image, 1/2 each.
    ``"mirror_translate"`` (airbench94's 6 views): ``x`` and its mirror, 1/4 each, and the
    image shifted by one pixel down-right and up-left (reflect padding), each with its
    mirror, 1/8 each.
    """
    fn = "tta_views"
    _check_batch(fn, x)
    if mode not in TTA_MODES:
        raise ValueError(f"{fn}: expected mode to be one of {list(TTA_MODES)}, got {mode!r}")
    if mode == "none":
        return [(x, 1.0)]
    if mode == "mirror":
        return [(x, 0.5), (flip_horizontal(x), 0.5)]
    views = [(x, 0.25), (flip_horizontal(x), 0.25)]
    for d in (1, -1):
        shifted = translate(x, d, d, "reflect")
        views += [(shifted, 0.125), (flip_horizontal(shifted), 0.125)]
    return views


def tta_predict(
    score_fn: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    mode: str = "mirror",
    batch_size: int = 100,
) -> np.ndarray:
    """The weighted mean of ``score_fn`` over the :func:`tta_views` of ``X``.

    ``score_fn`` maps a batch ``(n, C, H, W)`` to scores ``(n, K)`` (for a model:
    ``model.loss``, which returns class scores when called without labels). ``X`` is
    scored ``batch_size`` rows at a time, all views of those rows before the next rows,
    so memory stays at a few batches. Returns float64 scores ``(N, K)``.
    """
    fn = "tta_predict"
    _check_batch(fn, X)
    batch_size = check_count(fn, "batch_size", batch_size, 1)
    if mode not in TTA_MODES:
        raise ValueError(f"{fn}: expected mode to be one of {list(TTA_MODES)}, got {mode!r}")
    chunks = []
    for start in range(0, len(X), batch_size):
        xb = X[start : start + batch_size]
        total = None
        for view, weight in tta_views(xb, mode):
            scores = np.asarray(score_fn(view))
            if scores.ndim != 2 or len(scores) != len(xb):
                raise ValueError(
                    f"{fn}: expected score_fn to return scores of shape ({len(xb)}, K), "
                    f"got {scores.shape}"
                )
            part = weight * scores.astype(np.float64)
            total = part if total is None else total + part
        chunks.append(total)
    if not chunks:
        raise ValueError(f"{fn}: expected at least one example, got X of shape {X.shape}")
    return np.concatenate(chunks)
