"""One image file as uint8 ``(C, H, W)`` with Pillow (the ``cli`` extra, imported lazily).

Every mode becomes the requested channel count: 1 (Pillow's ``convert('L')``, ITU-R 601
luma) or 3 (``convert('RGB')``; grayscale repeated). Alpha is dropped (RGBA, LA, PA);
palette images are looked up in their palette; 16-bit grayscale is divided by 257 and
float images are read as [0, 1] (or [0, 255]), so a 16-bit or float copy of an 8-bit
image decodes to that image. Sizes are changed with Pillow's LANCZOS filter. Images over
:data:`MAX_PIXELS` (a decompression bomb, or just too large) are refused from their
header, before they are decoded; a truncated or unreadable file is refused by name.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

__all__ = ["GRAY_MODES", "IMAGE_SUFFIXES", "MAX_PIXELS", "RESIZE_FILTER", "ImageTooLargeError",
           "decode", "open_image", "pillow", "probe"]  # fmt: skip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".pnm")  # fmt: skip
"""File name endings read as images (case-insensitive); other files are not images."""
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
MAX_PIXELS = 64_000_000
"""The largest image decoded (as ``nndl predict``): 64 megapixels."""
RESIZE_FILTER = "LANCZOS"
_HIGH_DEPTH = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def pillow() -> Any:
    """``PIL.Image``, or an ImportError that says how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image folders needs Pillow: pip install 'nndl[cli]'") from None
    return Image


class ImageTooLargeError(ValueError):
    """An image over the pixel limit, or over Pillow's own decompression-bomb limit;
    ``size`` says how large ("4000 x 3000 pixels")."""

    def __init__(self, path: Any, size: str, limit: int) -> None:
        self.path, self.size, self.limit = path, size, limit
        super().__init__(f"{path}: the image is {size}; at most {limit // 1_000_000} "
                         "megapixels are decoded (a decompression bomb?)")  # fmt: skip


def open_image(path: Any, max_pixels: int = MAX_PIXELS) -> Any:
    """``Image.open(path)`` (only the header is read), refused with :class:`ImageTooLargeError`
    above ``max_pixels`` pixels, and Pillow's decompression-bomb warning raised as that
    error instead of printed. Other errors (a missing file, not an image) propagate."""
    Image = pillow()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLargeError(path, "a decompression bomb (too many pixels)",
                                max_pixels) from None  # fmt: skip
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageTooLargeError(path, f"{w} x {h} pixels", max_pixels)
    return im


def _open(path: str | os.PathLike[str]) -> Any:
    """:func:`open_image`, a file Pillow cannot read refused as a ValueError naming it."""
    try:
        return open_image(path)
    except (FileNotFoundError, ImageTooLargeError):
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is OSError
        raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None


def probe(path: str | os.PathLike[str]) -> tuple[tuple[int, int], bool]:
    """((height, width), grayscale?) from the file's header, without decoding it."""
    with _open(path) as im:
        return (im.size[1], im.size[0]), im.mode in GRAY_MODES


def _to_8bit_gray(Image: Any, im: Any, path: Any) -> Any:
    """A 16-bit, 32-bit integer or float grayscale image as an 8-bit ``L`` image."""
    a = np.asarray(im.convert("I") if im.mode.startswith("I;16") else im, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: the image holds non-finite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255
    elif im.mode == "F" and lo >= 0 and hi <= 255:
        pass
    elif im.mode != "F" and lo >= 0 and hi <= 65535:
        a = a / 257  # 65535 is white; 257 * v is the 16-bit copy of the 8-bit value v
    else:
        raise ValueError(f"{path}: {im.mode} values span [{lo:g}, {hi:g}]; expected [0, 1] or "
                         "[0, 255] (float) or [0, 65535] (16-bit)")  # fmt: skip
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def decode(path: str | os.PathLike[str], channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """The image ``path`` as uint8 ``(channels, H, W)``, resized to ``size`` (H, W) with
    LANCZOS when it differs (None: as stored)."""
    Image = pillow()
    with _open(path) as im:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
                out = _to_8bit_gray(Image, im, path) if im.mode in _HIGH_DEPTH else im
                out = out.convert("L" if channels == 1 else "RGB")
                if size is not None and out.size != (size[1], size[0]):
                    out = out.resize((size[1], size[0]), Image.Resampling.LANCZOS)
                a = np.asarray(out, dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLargeError(path, "a decompression bomb (too many pixels)",
                                     MAX_PIXELS) from None  # fmt: skip
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, damaged
            if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: cannot decode the image ({exc})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
