"""Saliency maps, Grad-CAM, fooling images and class visualisation.

Every method takes raw images (N, C, H, W) with pixel values 0-255 and the run's
preprocessing ``preprocess`` (see :mod:`nndl.explain.pixels`), which it applies before
the model and undoes for what it returns; with ``preprocess=None`` the images are the
model's inputs as they are. Class scores are the model's scores before the softmax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import check_count, check_real
from .gradients import (
    activations,
    input_gradient,
    layer_gradient,
    layer_paths,
    model_tree,
    scores,
    spatial_layers,
)
from .pixels import class_index, gaussian_blur, pixel_bounds, pixel_gradient, to_input, to_pixels

__all__ = [
    "saliency_map",
    "grad_cam",
    "fooling_image",
    "Fooled",
    "class_visualization",
    "feature_maps",
]

Pre = Mapping[str, Any] | None


def _one_hot(fn: str, model: Any, y: Any, N: int) -> np.ndarray:
    classes = int(model.config["num_classes"])
    y = np.broadcast_to(np.asarray(y), (N,)) if np.ndim(y) == 0 else np.asarray(y)
    if y.shape != (N,) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= classes:
        raise ValueError(f"{fn}: expected y as {N} class indices in [0, {classes}), got {y!r}")
    return np.eye(classes, dtype=model.dtype)[y]


def saliency_map(model: Any, X: np.ndarray, y: Any, preprocess: Pre = None) -> np.ndarray:
    """Saliency (Simonyan, Vedaldi & Zisserman, 2014, "Deep inside convolutional
    networks"): ``M[i, h, w] = max_c |d s_{y_i}(X_i) / d X_i[c, h, w]|``, the largest
    absolute gradient of class ``y_i``'s score over the channels of each pixel.

    X (N, C, H, W) raw pixels, y (N,) class indices (or one for all) -> (N, H, W).
    """
    fn = "saliency_map"
    Xin = to_input(X, preprocess, model.dtype, fn)
    dX = input_gradient(model, Xin, _one_hot(fn, model, y, len(Xin)))
    return np.abs(pixel_gradient(dX, preprocess)).max(axis=1)


def _resize_bilinear(maps: np.ndarray, H: int, W: int) -> np.ndarray:
    """(N, h, w) -> (N, H, W), bilinear with pixel centres aligned (as image resizers do)."""

    def weights(n_in: int, n_out: int):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    (r0, r1, fr), (c0, c1, fc) = weights(maps.shape[1], H), weights(maps.shape[2], W)
    rows = maps[:, r0] * (1 - fr)[:, None] + maps[:, r1] * fr[:, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def _spatial_layer(fn: str, model: Any, layer: str | None, last: bool = True) -> str:
    """``layer`` checked to have a (C, H, W) map, or the last (first) such layer."""
    valid = spatial_layers(model)
    if not valid:
        raise ValueError(f"{fn}: {type(model).__name__} has no layer with a spatial map")
    if layer is None:
        return valid[-1 if last else 0]
    if layer not in valid:
        what = "no layer" if layer not in layer_paths(model) else "no spatial map at layer"
        raise ValueError(f"{fn}: {what} {layer!r}; the layers with a spatial map are {valid}")
    return layer


def feature_maps(model: Any, X: np.ndarray, layer: str | None = None, preprocess: Pre = None):
    """The maps (N, C, H, W) that ``layer`` (a path with a spatial output; None: the first)
    computes for the raw images X; :func:`nndl.explain.plots.plot_feature_maps` draws one."""
    fn = "feature_maps"
    Xin = to_input(X, preprocess, model.dtype, fn)
    layer = _spatial_layer(fn, model, layer, last=False)
    return activations(model, Xin, [layer])[layer]


def grad_cam(
    model: Any, X: np.ndarray, y: Any, layer: str | None = None, preprocess: Pre = None
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: visual explanations from deep networks
    via gradient-based localization"): with ``A`` the chosen layer's map (K, h, w) and
    ``alpha_k = mean_{h,w} d s_y / d A_k``, ``L = relu(sum_k alpha_k A_k)``, upsampled
    bilinearly to the input size and divided by its maximum (all zeros if it has none).

    ``layer``: a path whose output is a (C, H, W) map; None takes the last such layer.
    X (N, C, H, W) raw pixels, y (N,) -> (N, H, W) in [0, 1].
    """
    fn = "grad_cam"
    Xin = to_input(X, preprocess, model.dtype, fn)
    layer = _spatial_layer(fn, model, layer)
    A, dA = layer_gradient(model, Xin, _one_hot(fn, model, y, len(Xin)), layer)
    alpha = dA.mean(axis=(2, 3), dtype=np.float64)
    cam = np.maximum(np.einsum("nk,nkhw->nhw", alpha, A), 0)
    cam = _resize_bilinear(cam, *Xin.shape[2:])
    top = cam.max(axis=(1, 2), keepdims=True)
    return np.where(top > 0, cam / np.where(top > 0, top, 1), 0.0)


@dataclass
class Fooled:
    """What :func:`fooling_image` returns, per image: ``images`` (N, C, H, W) raw pixels,
    ``fooled`` (whether the model now predicts the target), ``iterations`` (steps taken),
    ``linf`` (the largest pixel change) and ``l2`` (the change's norm), in pixel units."""

    images: np.ndarray
    fooled: np.ndarray
    iterations: np.ndarray
    linf: np.ndarray
    l2: np.ndarray


def fooling_image(
    model: Any,
    X: np.ndarray,
    target: Any,
    preprocess: Pre = None,
    step: float = 10.0,
    max_iter: int = 100,
) -> Fooled:
    """Fooling images (Szegedy et al., 2014, "Intriguing properties of neural networks";
    the normalised-gradient form of CS231n): ``X <- X + step * g / ||g||_2`` with ``g = d
    s_target / d X``, per image until the model predicts ``target`` (at most ``max_iter``
    steps). ``step`` is the L2 length of a step in raw pixel units; pixels stay in [0, 255]
    when ``preprocess`` is given. ``target``: one class index or (N,) of them.
    """
    fn = "fooling_image"
    step = check_real(fn, "step", step, 0, above=True)
    max_iter = check_count(fn, "max_iter", max_iter, 0)
    start = to_input(X, preprocess, model.dtype, fn)
    d = _one_hot(fn, model, target, len(start))
    goal = d.argmax(axis=1)
    std = pixel_gradient(np.ones((1, start.shape[1], 1, 1), np.float64), preprocess)
    lo, hi = pixel_bounds(preprocess, model.dtype)
    Xf = start.copy()
    iters = np.zeros(len(Xf), dtype=int)
    active = scores(model, Xf).argmax(axis=1) != goal
    for _ in range(max_iter):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        g = pixel_gradient(input_gradient(model, Xf[idx], d[idx]), preprocess)  # d s / d raw
        norm = np.sqrt((g.astype(np.float64) ** 2).sum(axis=(1, 2, 3), keepdims=True))
        # A raw-pixel step of L2 length `step`, mapped to the input (divided by std).
        Xf[idx] = np.clip(Xf[idx] + step * g / np.maximum(norm, 1e-12) * std, lo, hi)
        iters[idx] += 1
        active[idx] = scores(model, Xf[idx]).argmax(axis=1) != goal[idx]
    images = to_pixels(Xf, preprocess)
    diff = images - to_pixels(start, preprocess)
    return Fooled(images, ~active, iters, np.abs(diff).max(axis=(1, 2, 3)),
                  np.sqrt((diff**2).sum(axis=(1, 2, 3))))  # fmt: skip


def class_visualization(
    model: Any,
    target: Any,
    preprocess: Pre = None,
    iterations: int = 200,
    step: float = 2.0,
    l2_reg: float = 1e-5,
    jitter: int = 2,
    blur_every: int = 10,
    blur_sigma: float = 0.5,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Images that maximise a class score (Simonyan et al., 2014; with the regularisers
    of Yosinski et al., 2015, "Understanding neural networks through deep
    visualization"): gradient ascent on ``s_target(I) - l2_reg * ||I||^2`` (I the model's
    input) from small noise; each step is taken on a copy rolled by a random jitter of up
    to ``jitter`` pixels (then rolled back), its size ``step * g / mean|g|``; pixels stay
    in [0, 255] with ``preprocess``; a Gaussian blur of ``blur_sigma`` pixels every
    ``blur_every`` steps. Deterministic from ``seed``.

    ``target``: a class index or name (one of ``class_names``), or a list of them (one
    image each, computed together). Returns (C, H, W) raw pixels, or (K, C, H, W).
    """
    fn = "class_visualization"
    classes = int(model.config["num_classes"])
    many = isinstance(target, (list, tuple, np.ndarray))
    ks = [class_index(fn, t, class_names, classes) for t in (target if many else [target])]
    iterations = check_count(fn, "iterations", iterations, 1)
    jitter = check_count(fn, "jitter", jitter, 0)
    step = check_real(fn, "step", step, 0, above=True)
    l2_reg = check_real(fn, "l2_reg", l2_reg, 0)
    rng = np.random.default_rng(seed)
    lo, hi = pixel_bounds(preprocess, model.dtype)
    shape = model_tree(model, fn).input_shape if preprocess is None else np.shape(
        preprocess["mean_image"])  # fmt: skip
    img = (rng.standard_normal((len(ks), *shape)) * 5).astype(model.dtype)
    d = np.eye(classes, dtype=model.dtype)[ks]
    axes = tuple(range(1, img.ndim))
    for t in range(iterations):
        ox, oy = rng.integers(-jitter, jitter + 1, 2)
        rolled = np.roll(img, (ox, oy), axis=(2, 3))
        g = input_gradient(model, rolled, d) - 2 * l2_reg * rolled
        size = np.maximum(np.abs(g).mean(axis=axes, keepdims=True), 1e-12)
        rolled = rolled + step * g / size
        img = np.clip(np.roll(rolled, (-ox, -oy), axis=(2, 3)), lo, hi).astype(model.dtype)
        if blur_every and (t + 1) % blur_every == 0:
            img = gaussian_blur(img, blur_sigma).astype(model.dtype)
    out = to_pixels(img, preprocess)
    out = out if preprocess is None else np.clip(out, 0, 255)  # float rounding at the bounds
    return out if many else out[0]
