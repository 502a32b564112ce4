"""Data sets beyond arrays: the named ones (:data:`DATASETS`: CIFAR-10, CIFAR-100,
MNIST, Fashion-MNIST) and folders of your own images, all returned by
:func:`load_dataset` as :func:`nndl.data.get_CIFAR10_data` returns CIFAR-10.

One module per format: :mod:`~nndl.datasets.cifar` (the CIFAR python pickles),
:mod:`~nndl.datasets.idx` (IDX gzip), :mod:`~nndl.datasets.folder` (image folders,
decoded with :mod:`~nndl.datasets.images`, cached); :mod:`~nndl.datasets.fetch` finds
and downloads the named sets, :mod:`~nndl.datasets.splits` splits and preprocesses,
:mod:`~nndl.datasets.standardized` keeps training images as 8-bit pixels, standardised
batch by batch.
"""

from .folder import load_folder, scan_folder
from .idx import read_idx
from .images import decode as decode_image
from .registry import (
    DATASETS,
    Dataset,
    dataset_shape,
    is_named,
    load_dataset,
    load_dataset_info,
    prepare_dataset,
    reads_pixels,
)
from .standardized import StandardizedImages

__all__ = [
    "DATASETS",
    "Dataset",
    "StandardizedImages",
    "dataset_shape",
    "decode_image",
    "is_named",
    "reads_pixels",
    "load_dataset",
    "load_dataset_info",
    "load_folder",
    "prepare_dataset",
    "read_idx",
    "scan_folder",
]
