"""Pictures of what :mod:`nndl.explain` computes, as matplotlib Figures.

As in :mod:`nndl.plots`: each function builds a ``matplotlib.figure.Figure`` without
``pyplot`` (no backend is chosen, no global state touched), returns it, and given
``path`` also writes a PNG atomically. Images are raw pixels (C, H, W), 0-255.
matplotlib is imported inside the functions (the ``cli`` extra).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..plots import filter_grid, save_figure

__all__ = ["plot_map", "plot_fooling", "plot_images", "plot_feature_maps", "to_rgb"]

PathLike = str | os.PathLike

MAP_CMAPS = {"saliency": "hot", "gradcam": "jet"}


def _figure(fn: str, figsize: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"{fn}: plotting needs matplotlib; install it with: pip install 'nndl[cli]'"
        ) from exc
    return Figure(figsize=figsize)


def _finish(fig: Any, path: PathLike | None) -> Any:
    if path is not None:
        save_figure(fig, path)
    return fig


def to_rgb(image: Any) -> np.ndarray:
    """Raw pixels (C, H, W) as an (H, W, 3) float image in [0, 1] (grey for C == 1)."""
    a = np.asarray(image, np.float64)
    if a.ndim != 3:
        raise ValueError(f"to_rgb: expected an image (C, H, W), got shape {a.shape}")
    a = np.clip(a / 255.0, 0, 1).transpose(1, 2, 0)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3]


def _show(ax: Any, picture: Any, title: str, **kw: Any) -> None:
    ax.imshow(picture, interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_map(
    image: Any, heat: Any, kind: str = "saliency", title: str = "", path: PathLike | None = None
) -> Any:
    """Three panels: the image, the map ``heat`` (H, W), and the map over the image.
    ``kind`` ('saliency' or 'gradcam') picks the colour map; ``title`` heads the figure."""
    cmap = MAP_CMAPS.get(kind, "viridis")
    heat = np.asarray(heat, np.float64)
    fig = _figure("plot_map", (7.5, 2.9))
    axes = fig.subplots(1, 3)
    rgb = to_rgb(image)
    _show(axes[0], rgb, "image")
    _show(axes[1], heat, kind, cmap=cmap)
    _show(axes[2], rgb, "overlay")
    axes[2].imshow(heat, cmap=cmap, alpha=0.5, interpolation="bilinear")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_fooling(
    original: Any,
    fooled: Any,
    titles: Sequence[str] = ("original", "fooling image"),
    magnify: float = 10.0,
    path: PathLike | None = None,
) -> Any:
    """Three panels: the original, the fooling image and their difference magnified
    ``magnify`` times around mid-grey."""
    diff = np.asarray(fooled, np.float64) - np.asarray(original, np.float64)
    fig = _figure("plot_fooling", (7.5, 2.9))
    axes = fig.subplots(1, 3)
    _show(axes[0], to_rgb(original), titles[0])
    _show(axes[1], to_rgb(fooled), titles[1])
    _show(axes[2], to_rgb(127.5 + magnify * diff), f"difference x{magnify:g}")
    return _finish(fig, path)


def plot_images(
    images: Any, titles: Sequence[str] | None = None, cols: int = 5, path: PathLike | None = None
) -> Any:
    """Raw images (N, C, H, W) in a grid, each with its title."""
    images = np.asarray(images)
    n = len(images)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = _figure("plot_images", (1.6 * cols, 1.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        if i < n:
            _show(ax, to_rgb(images[i]), titles[i] if titles else "")
        else:
            ax.set_axis_off()
    return _finish(fig, path)


def plot_feature_maps(
    maps: Any, title: str = "", max_maps: int = 64, path: PathLike | None = None
) -> Any:
    """One layer's output for one image (C, H, W): the first ``max_maps`` channels as a
    grid, each scaled to its own range (:func:`nndl.plots.filter_grid`)."""
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3:
        raise ValueError(f"plot_feature_maps: expected maps (C, H, W), got shape {maps.shape}")
    grid = filter_grid(maps[:max_maps, None], padding=1)
    # The padding between tiles left blank (filter_grid pads with 1.0, a map's maximum).
    grid[filter_grid(np.zeros_like(maps[:max_maps, None]), padding=1) == 1.0] = np.nan
    fig = _figure("plot_feature_maps", (5, 5))
    ax = fig.add_subplot()
    _show(ax, grid, title or f"{min(len(maps), max_maps)} of {len(maps)} feature maps",
          cmap="viridis")  # fmt: skip
    return _finish(fig, path)
