"""``nndl predict RUN_DIR IMAGE...``: the most probable classes of image files."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .errors import CLIError, cli_path
from .inputs import apply_preprocess, load_images
from .report import batched_scores, softmax
from .run_folder import RunFolder

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a trained model",
        description="Classify PNG/JPEG images with a run's best model: each is converted "
        "to RGB, resized to the model's input size and preprocessed as in training; prints "
        "the most probable classes.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'nndl train'")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
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


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
    folder = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    pre = folder.read_preprocess()  # a missing run folder is reported before the images
    X = load_images(args.images, pre["mean_image"].shape[1:])
    model, _, pre = folder.load_model(last=args.last)
    X = apply_preprocess(X, pre)
    probs = softmax(batched_scores(model, X))
    names = pre["class_names"]
    k = min(args.top_k, len(names))
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.4f}" for i in top))
    return 0
