"""``nndl predict RUN_DIR IMAGE...`` (or ``nndl predict --pretrained IMAGE...``): the most
probable classes of image files."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..data import apply_preprocess
from ..models import pretrained
from .errors import CLIError, cli_path
from .inputs import load_run_images
from .report import batched_scores, softmax
from .run_folder import ALLOW_NONFINITE_HELP, RunFolder

__all__ = ["add_parser", "run", "shipped_model"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        usage="nndl predict [-h] [--top-k K] [--last] [--allow-nonfinite] RUN_DIR IMAGE "
        "[IMAGE ...]\n"
        "       nndl predict [-h] [--top-k K] --pretrained IMAGE [IMAGE ...]",
        help="classify image files with a trained model",
        description="Classify PNG/JPEG images with a run's best model (or, with "
        "--pretrained, the model shipped with nndl): each is converted to the run's "
        "channels (RGB, or grayscale for a grayscale data set), resized to the model's "
        "input size (LANCZOS) and preprocessed as in training, with a note on stderr when "
        "an image is converted or resized; prints the most probable classes.",
    )
    p.add_argument(
        "paths",
        metavar="RUN_DIR IMAGE",
        nargs="+",
        help="a run folder written by 'nndl train', then image files (PNG, JPEG, ...); "
        "with --pretrained, image files only",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="use the model shipped with nndl instead of a run folder (no training, no "
        "download; nndl.models.pretrained(): the 65 preset, its test accuracy in the README)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="how many classes to print per image (default: 3)",
    )
    p.add_argument(
        "--last", action="store_true", help="use last_model.npz instead of best_model.npz"
    )
    p.add_argument("--allow-nonfinite", action="store_true", help=ALLOW_NONFINITE_HELP)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
    model, pre, images = _model_and_images(args)
    X = apply_preprocess(load_run_images(images, pre, "nndl predict"), pre)
    probs = softmax(batched_scores(model, X))
    names = pre["class_names"]
    k = min(args.top_k, len(names))
    for path, p in zip(images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.4f}" for i in top))
    return 0


def shipped_model(last: bool = False) -> tuple[Any, dict[str, Any]]:
    """(model, preprocess) of ``--pretrained``: the model shipped in the package, its class
    names as strings; ``--last`` (``last``) is refused, there being one model."""
    if last:
        raise CLIError("--last takes a run folder; the --pretrained model has one model")
    model, info = pretrained("default")
    pre = dict(info["preprocess"])
    pre["class_names"] = [str(n) for n in pre["class_names"]]
    return model, pre


def _model_and_images(args: argparse.Namespace) -> tuple[Any, dict[str, Any], list[str]]:
    """(model, preprocess, image paths): the shipped model, or a run folder's model; a
    run folder is checked before any image is read."""
    if args.pretrained:
        return (*shipped_model(args.last), list(args.paths))
    if len(args.paths) < 2:
        raise CLIError(
            "expected RUN_DIR and at least one IMAGE (or --pretrained IMAGE...), got "
            f"{len(args.paths)} argument"
        )
    folder = RunFolder(cli_path(args.paths[0], "RUN_DIR"))
    folder.read_preprocess(args.allow_nonfinite)  # a bad run folder is reported before the images
    model, _, pre = folder.load_model(args.last, args.allow_nonfinite)
    return model, pre, list(args.paths[1:])
