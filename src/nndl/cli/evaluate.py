"""``nndl evaluate RUN_DIR``: accuracy, per-class accuracy and the confusion matrix of a
run's best (or last) model on its test (or validation) split, into evaluation.json;
``--num-test 10000`` evaluates on the full test set, ``--tta`` with test-time
augmentation. :func:`evaluate_model` is also what ``nndl train --test-at-end`` runs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import apply_preprocess
from ..train.augment import TTA_MODES, tta_predict
from ..validation import check_finite, check_labels
from .errors import CLIError, cli_path
from .flags import NEW_DEFAULTS, check_settings
from .inputs import load_cifar
from .report import batched_scores, evaluate_scores, evaluation_report, require_matplotlib
from .run_folder import ALLOW_NONFINITE_HELP, RunFolder

__all__ = ["add_parser", "run", "evaluate_model"]


def evaluate_model(
    model: Any, X: np.ndarray, y: np.ndarray, class_names: Sequence[str], tta: str = "none"
) -> dict[str, Any]:
    """Accuracy, per class and the confusion matrix of ``model`` on preprocessed ``X``,
    scored with the test-time augmentation ``tta`` (:func:`nndl.augment.tta_predict`:
    the weighted mean of the views' scores)."""
    started = time.perf_counter()
    if tta == "none":
        scores = batched_scores(model, X)
    else:
        scores = tta_predict(model.loss, X, tta, batch_size=200)
    result = evaluate_scores(scores, y, class_names)
    result.update(tta=tta, seconds=round(time.perf_counter() - started, 3))
    return result


def _checked_inputs(X: np.ndarray, y: np.ndarray, pre: dict[str, Any], key: str) -> np.ndarray:
    """``X`` prepared as in training, refused (naming the array and the first bad index)
    if it, or what the preprocessing makes of it, is not finite: a nan score would count
    as a wrong answer and report a plausible-looking accuracy."""
    where = f"the {key} split"
    check_finite(where, f"X_{key}", X)
    check_labels(where, y, len(X), len(pre["class_names"]), name=f"y_{key}", x=f"X_{key}")
    prepared = apply_preprocess(X, pre)
    check_finite(where, f"X_{key} after the preprocessing of preprocess.npz", prepared)
    return prepared


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a run's best model on the test (or val) split: prints "
        "accuracy, per-class accuracy and the confusion matrix and writes "
        "evaluation.json into the run folder.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'nndl train'")
    e.add_argument("--data-dir", help="folder of the run's named data set, e.g. CIFAR-10 "
                   "(default: the one used for training; an image folder run reads its folder)")
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
    e.add_argument("--allow-nonfinite", action="store_true", help=ALLOW_NONFINITE_HELP)
    e.add_argument(
        "--num-test",
        type=int,
        metavar="N",
        help="evaluate on the first N test images, up to 10000 (default: the run's "
        "--num-test); the split is the same for every seed",
    )
    e.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: none, mirror (2 views) or mirror_translate "
        "(airbench94's 6 views) (default: the run's --tta, else none)",
    )


def run(args: argparse.Namespace) -> int:
    if args.num_test is not None and args.num_test < 1:
        raise CLIError(f"--num-test must be at least 1, got {args.num_test}")
    folder = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    config = folder.read_config()
    settings = {**NEW_DEFAULTS, **config["settings"]}
    needed = ("num_training", "num_validation", "num_test", "dtype")
    check_settings(settings, lambda k: f"{folder.config}: settings.{k}", needed)
    model, extra, pre = folder.load_model(args.last, args.allow_nonfinite)
    if args.plot:
        require_matplotlib()
    if args.data_dir is not None:
        args.data_dir = str(cli_path(args.data_dir, "--data-dir"))
    if args.split == "val" and settings["num_validation"] == 0:
        raise CLIError(f"{folder.path} was trained without a validation split (--num-validation 0)")
    tta = args.tta if args.tta is not None else settings["tta"]
    data_dir = folder.data_dir(args.data_dir, config)
    # Only the split evaluated is read (the training images are not needed).
    sizes = {
        "num_training": 1,
        "num_validation": 0,
        "num_test": args.num_test if args.num_test is not None else settings["num_test"],
    }
    if args.split == "val":
        sizes = {k: settings[k] for k in ("num_training", "num_validation")} | {"num_test": 0}
    data, _ = load_cifar({**settings, **sizes}, data_dir=data_dir, subtract_mean=False,
                         progress=False)  # fmt: skip
    key = "test" if args.split == "test" else "val"
    X = _checked_inputs(data[f"X_{key}"], data[f"y_{key}"], pre, key)
    which = folder.last.name if args.last else folder.best.name
    result = {"model_file": which, "epoch": extra.get("epoch"), "split": args.split}
    result.update(evaluate_model(model, X, data[f"y_{key}"], pre["class_names"], tta))
    print(evaluation_report(result))
    folder.write_json("evaluation.json", result)
    if args.plot:
        from ..plots import plot_confusion_matrix

        cm = np.array(result["confusion_matrix"])
        plot_confusion_matrix(cm, pre["class_names"], path=folder.path / "confusion_matrix.png")
        print(f"wrote {folder.path / 'confusion_matrix.png'}")
    return 0
