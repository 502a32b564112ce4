"""What the command line reads besides run folders: a run's data set (CIFAR-10 by default,
any of :mod:`nndl.datasets`), image files for ``nndl predict`` and architecture specs for
``--arch``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import apply_preprocess, channel_mean_std, data_fingerprint, pixel_mean
from ..datasets import StandardizedImages, is_named, load_dataset_info, reads_pixels
from ..datasets.images import MAX_PIXELS, ImageTooLargeError, open_image
from ..io.jsonfile import JSONLimitError, loads_bounded
from ..nn.spec import check_spec
from .errors import CLIError, read_text

__all__ = ["MAX_IMAGE_PIXELS", "DATA_SIZES", "load_data", "load_cifar", "load_images",
           "load_run_images", "read_arch", "to_gray"]  # fmt: skip

DATA_SIZES = ("num_training", "num_validation", "num_test")


def read_arch(path: str) -> list:
    """argparse type of ``--arch``: the JSON architecture spec in the file ``path`` (a
    non-empty list of :mod:`nndl.nn` layers; checked in full when the model is planned)."""
    if not os.fspath(path).strip():
        raise argparse.ArgumentTypeError("the file name is empty (an unset shell variable?)")
    try:
        spec = loads_bounded(read_text(Path(path).expanduser()), path)
    except JSONLimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{path}: no such file") from None
    except (OSError, CLIError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(spec, list) or not spec:
        raise argparse.ArgumentTypeError(
            f"{path}: expected a JSON list of layers such as "
            '[{"type": "conv_bn_relu_pool", "filters": 16}, {"type": "linear", "units": 10}], '
            f"got {type(spec).__name__ if spec else 'an empty list'}"
        )
    try:
        check_spec(spec)  # its size, so that summary and train refuse the same specs early
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    return spec


def load_data(
    settings: dict[str, Any],
    data_dir: str | None = None,
    subtract_mean: bool = True,
    progress: bool = True,
    fit: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The splits of ``settings['dataset']`` (default cifar10) sized by ``settings`` (as
    ``settings['dtype']``) and a data summary; the sizes named in ``fit`` are fitted to
    the data instead (:func:`nndl.datasets.load_dataset`'s defaults) and reported in the
    summary.

    With ``subtract_mean`` the splits are preprocessed as the run's ``normalize`` setting
    says (the summary holds ``mean_image``, and ``mean``/``std`` of the training images
    for ``channel``); without it they are raw pixels.
    """
    channel = subtract_mean and settings.get("normalize", "mean_image") == "channel"
    dataset = settings.get("dataset", "cifar10")
    # A run reads the 8-bit pixels where the data set's loader gives them, and keeps its
    # training set so (StandardizedImages): no float32 copy of it is ever built.
    pixels = subtract_mean and reads_pixels(dataset)
    sizes = {k: None if k in fit else settings[k] for k in DATA_SIZES}
    data, found = load_dataset_info(
        dataset,
        data_dir if is_named(dataset) else None,
        **sizes,
        image_size=settings.get("image_size"),
        channels=settings.get("channels"),
        subtract_mean=subtract_mean and not channel and not pixels,
        dtype=np.uint8 if pixels else np.float32,
        seed=settings.get("seed", 0),
        progress=progress,
    )
    root = found["path"]
    if pixels and not channel:
        data["mean_image"] = pixel_mean(data["X_train"])
    pre: dict[str, Any] = {"mean_image": np.asarray(data["mean_image"], np.float32)}
    # of the float32 arrays, whatever the dtype (8-bit pixels hashed as X - mean_image)
    fingerprint = data_fingerprint(data, mean_image=pre["mean_image"])
    if channel:
        mean, std = channel_mean_std(data["X_train"])
        pre.update(mean=mean.astype(np.float32), std=std.astype(np.float32))
    dtype = np.dtype(settings["dtype"])
    for key in ("X_train", "X_val", "X_test"):
        data[key] = _prepared(data[key], key, pre if subtract_mean else None, channel, dtype)
    info = {
        "dataset": found["dataset"],
        "data_dir": str(Path(root).resolve()),
        "fingerprint": fingerprint,
        "num_training": int(len(data["y_train"])),
        "num_validation": int(len(data["y_val"])),
        "num_test": int(len(data["y_test"])),
        "input_dim": [int(s) for s in data["X_train"].shape[1:]],
        "channels": found["channels"],
        "image_size": found["image_size"],
        "class_names": [str(n) for n in data["class_names"]],
    }
    info.update({k: found[k] for k in ("ignored_files", "cached", "decode_seconds") if k in found})
    if subtract_mean:
        info.update(pre)
    return data, info


load_cifar = load_data  # the name before other data sets


def _prepared(X: np.ndarray, key: str, pre: dict | None, channel: bool, dtype: np.dtype):
    """One split preprocessed (``pre``: the run's preprocessing, None for raw pixels):
    8-bit training pixels as :class:`StandardizedImages` (a quarter of the memory,
    preprocessed batch by batch), 8-bit validation and test pixels preprocessed whole,
    float splits in place as before. The same float32 operations every way."""
    raw = X if X.dtype == np.uint8 else _pixels(X) if channel and key == "X_train" else None
    if raw is not None and pre is not None:
        if key == "X_train":
            mean_image = None if channel else pre["mean_image"]
            return StandardizedImages(raw, pre.get("mean"), pre.get("std"), dtype,
                                      mean_image=mean_image)  # fmt: skip
        return apply_preprocess(raw, {**pre, "dtype": dtype})
    if channel:  # in place, in float32, as apply_preprocess computes it
        X -= pre["mean"][:, None, None]
        X /= pre["std"][:, None, None]
    return X.astype(dtype, copy=False)


def _pixels(X: np.ndarray) -> np.ndarray | None:
    """X as uint8 if it holds whole numbers 0-255 (raw pixels), else None."""
    if X.ndim != 4 or not len(X):
        return None
    with np.errstate(invalid="ignore"):  # NaN: not pixels (check_data names it later)
        raw = X.astype(np.uint8)
    return raw if np.array_equal(raw, X) else None


# Pillow modes beyond 8 bits per channel, converted by their own range (Pillow's
# convert('RGB') would clip 16-bit values at 255 and float values in [0, 1] to 0 or 1).
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

MAX_IMAGE_PIXELS = MAX_PIXELS
"""The largest image ``nndl predict`` decodes (64 megapixels, as the image-folder
loader); a larger one is refused from its header, before it is decoded."""

_STRIP_PIXELS = 1 << 22  # the float range check reads this many pixels at a time


def _float_range(im: Any, path: Any) -> tuple[float, float]:
    """(min, max) of a float image, checked finite strip by strip (no full-size copy)."""
    width, height = im.size
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    lo, hi = 0.0, 0.0
    for top in range(0, height, rows):
        a = np.asarray(im.crop((0, top, width, min(height, top + rows))))
        if not np.all(np.isfinite(a)):
            raise CLIError(f"cannot read image {path}: it holds non-finite values")
        lo, hi = (float(a.min()), float(a.max())) if top == 0 else (
            min(lo, float(a.min())), max(hi, float(a.max())))  # fmt: skip
    return lo, hi


def _high_depth_rgb(im: Any, path: Any, width: int, height: int) -> np.ndarray | None:
    """A high-depth grayscale image as float32 (3, H, W) in [0, 255], resized in its own
    mode (no full-size float copy); None for 8-bit modes."""
    from PIL import Image

    if im.mode not in (*_UINT16_MODES, "I", "F"):
        return None
    if im.mode in _UINT16_MODES and im.mode != "I;16":
        im = im.convert("I")  # Pillow resizes only native-order I;16
    lo, hi = _float_range(im, path) if im.mode == "F" else im.getextrema()
    if im.mode == "F" and lo >= 0 and hi <= 1:
        scale = 255.0  # float images conventionally span [0, 1]
    elif im.mode == "F" and lo >= 0 and hi <= 255:
        scale = 1.0
    elif im.mode != "F" and lo >= 0 and hi <= 65535:
        scale = 1 / 257  # 16-bit: 65535 is white, and 257 * v is the 16-bit copy of 8-bit v
    else:
        raise CLIError(
            f"cannot read image {path}: {im.mode} values span [{lo:g}, {hi:g}]; expected "
            "[0, 1] or [0, 255] (float) or [0, 65535] (16-bit)"
        )
    if im.size != (width, height):
        im = im.resize((width, height), Image.Resampling.LANCZOS)
    a = np.asarray(im, dtype=np.float64)
    a = a * 255 if scale == 255.0 else a / 257 if scale != 1.0 else a
    a = np.clip(a, 0, 255).astype(np.float32)  # LANCZOS overshoots at edges
    return np.repeat(a[None], 3, axis=0)


def _open(p: Any) -> Any:
    """The image ``p`` opened, refused above :data:`MAX_IMAGE_PIXELS` from its header."""
    try:
        return open_image(p, MAX_IMAGE_PIXELS)
    except ImageTooLargeError as exc:
        raise CLIError(_too_large(p, exc.size)) from None


def _too_large(p: Any, size: str) -> str:
    return (f"cannot read image {p}: it is {size}; at most {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels are read (shrink it first)")  # fmt: skip


def _load_one(Image: Any, p: Any, width: int, height: int) -> np.ndarray:
    with _open(p) as im:
        a = _high_depth_rgb(im, p, width, height)
        if a is not None:
            return a
        if im.format == "JPEG":
            im.draft("RGB", (width, height))  # decode at 1/2, 1/4 or 1/8 scale when larger
        im = im.convert("RGB")
        if im.size != (width, height):
            # LANCZOS low-pass filters while shrinking, so large photos do not alias.
            im = im.resize((width, height), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32).transpose(2, 0, 1)


def load_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Images as float32 ``(N, 3, H, W)`` in [0, 255]: RGB, resized to ``size`` (H, W).

    8-bit images (and 16-bit colour ones, which Pillow reduces exactly) are converted by
    Pillow; 16-bit grayscale by 65535 and float images by [0, 1] (or [0, 255]), so a
    16-bit or float copy of an image is read as the image itself. Images over
    :data:`MAX_IMAGE_PIXELS` are refused before they are decoded.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise CLIError("reading images needs Pillow: pip install 'nndl[cli]'") from exc
    height, width = size
    out = []
    for p in paths:
        try:
            with warnings.catch_warnings():  # Pillow's own bomb warning becomes our error
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                out.append(_load_one(Image, p, width, height))
        except FileNotFoundError:
            raise CLIError(f"image not found: {p}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise CLIError(_too_large(p, "a decompression bomb (too many pixels)")) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CLIError(f"cannot read image {p}: {exc}") from None
    return np.stack(out)


def to_gray(X: np.ndarray) -> np.ndarray:
    """RGB images ``(N, 3, H, W)`` (integer values 0-255) as ``(N, 1, H, W)``, by the
    formula of Pillow's ``convert('L')`` (ITU-R 601 luma in 16-bit fixed point, rounded),
    so that a colour image given to a grayscale run is what the folder loader makes of it."""
    rgb = np.rint(X).astype(np.int64)
    luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return luma[:, None].astype(np.float32)


def _say_conversions(paths: Sequence[str], channels: int, size: Sequence[int], dataset: str,
                     prog: str) -> None:  # fmt: skip
    """One note on stderr naming how many images were converted or resized, and to what."""
    from PIL import Image

    gray_modes = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
    resized = converted = 0
    for p in paths:
        with Image.open(p) as im:  # the header only; load_images has checked every file
            resized += im.size != (size[1], size[0])
            converted += (im.mode not in gray_modes) if channels == 1 else (im.mode != "RGB")
    parts = []
    if converted:
        parts.append(f"{converted} converted to {'grayscale' if channels == 1 else 'RGB'}")
    if resized:
        parts.append(f"{resized} resized to {size[0]}x{size[1]} (LANCZOS)")
    if parts:
        print(f"{prog}: note: of {len(paths)} image(s), {' and '.join(parts)}, as the "
              f"run's data ({dataset}) is {channels} x {size[0]} x {size[1]}",
              file=sys.stderr)  # fmt: skip


def load_run_images(paths: Sequence[str], pre: dict[str, Any], prog: str) -> np.ndarray:
    """Image files as raw float32 ``(N, C, H, W)`` of a run's data (``pre``: its
    preprocess.npz): resized to its size, converted to grayscale for a 1-channel run, with
    a note on stderr (``prog: note: ...``) when any image was converted or resized."""
    channels, size = pre["mean_image"].shape[0], pre["mean_image"].shape[1:]
    X = load_images(paths, size)
    _say_conversions(paths, channels, size, pre.get("dataset", "cifar10"), prog)
    return to_gray(X) if channels == 1 else X
