"""Data augmentation: a re-export of :mod:`nndl.train.augment`."""

from .train.augment import (
    AUGMENTATIONS,
    PAD_MODES,
    TTA_MODES,
    Augmentation,
    AugmentContext,
    alternating_flip,
    cutout,
    flip_horizontal,
    make_augmentation,
    normalize,
    random_crop,
    random_flip,
    translate,
    tta_predict,
    tta_views,
)

__all__ = [
    "AUGMENTATIONS",
    "AugmentContext",
    "Augmentation",
    "PAD_MODES",
    "TTA_MODES",
    "alternating_flip",
    "cutout",
    "flip_horizontal",
    "make_augmentation",
    "normalize",
    "random_crop",
    "random_flip",
    "translate",
    "tta_predict",
    "tta_views",
]
