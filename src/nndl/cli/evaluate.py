"""``nndl evaluate RUN_DIR``: accuracy, per-class accuracy and the confusion matrix of a
run's best (or last) model on its test (or validation) split, into evaluation.json."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .errors import cli_path
from .flags import check_settings
from .inputs import load_cifar
from .report import batched_scores, evaluate_scores, evaluation_report, require_matplotlib
from .run_folder import RunFolder

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a run's best model on the test (or val) split: prints "
        "accuracy, per-class accuracy and the confusion matrix and writes "
        "evaluation.json into the run folder.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'nndl train'")
    e.add_argument("--data-dir", help="CIFAR-10 folder (default: the one used for training)")
    e.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="which split to evaluate (default: test)",
    )
    e.add_argument(
        "--last", action="store_true", help="evaluate last_model.npz instead of best_model.npz"
    )
    e.add_argument("--plot", action="store_true", help="also write confusion_matrix.png")


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    config = folder.read_config()
    settings = config["settings"]
    needed = ("num_training", "num_validation", "num_test", "dtype")
    check_settings(settings, lambda k: f"{folder.config}: settings.{k}", needed)
    model, extra, pre = folder.load_model(last=args.last)
    if args.plot:
        require_matplotlib()
    if args.data_dir is not None:
        args.data_dir = str(cli_path(args.data_dir, "--data-dir"))
    data_dir = folder.data_dir(args.data_dir, config)
    data, _ = load_cifar(settings, data_dir=data_dir, subtract_mean=False, progress=False)
    key = "test" if args.split == "test" else "val"
    X = (data[f"X_{key}"] - pre["mean_image"]).astype(pre["dtype"], copy=False)
    which = folder.last.name if args.last else folder.best.name
    result = {"model_file": which, "epoch": extra.get("epoch"), "split": args.split}
    result.update(evaluate_scores(batched_scores(model, X), data[f"y_{key}"], pre["class_names"]))
    print(evaluation_report(result))
    folder.write_json("evaluation.json", result)
    if args.plot:
        from ..plots import plot_confusion_matrix

        cm = np.array(result["confusion_matrix"])
        plot_confusion_matrix(cm, pre["class_names"], path=folder.path / "confusion_matrix.png")
        print(f"wrote {folder.path / 'confusion_matrix.png'}")
    return 0
