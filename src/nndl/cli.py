"""The ``nndl`` command line: ``nndl train``, ``nndl evaluate`` and ``nndl predict``.

``nndl train`` trains a model from the registry on CIFAR-10 and writes everything about
the run into one folder (see :mod:`nndl.run_dir` for its contents); ``evaluate`` and
``predict`` read that folder back. Progress bars, plots and image loading need the
``cli`` extra: ``pip install 'nndl[cli]'``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .models import MODELS, build_model
from .optim import UPDATE_RULES
from .run_dir import (
    CLIError,
    RunFolder,
    batched_scores,
    evaluate_scores,
    evaluation_report,
    load_cifar,
    load_images,
    require_matplotlib,
    softmax,
)
from .run_recorder import RunRecorder

# The default run, used for every setting not given on the command line; tune it here.
# Chosen for time to 65% validation accuracy on a 2-core CPU (benchmarks/bench_train.py):
# a narrow conv net (16-32-64 filters, batch norm) passes 65% after one or two epochs of
# about 45 s each, where 32-64-128 needs twice the time per epoch for the same accuracy.
# The model settings (MODEL_FLAGS) apply to DEFAULTS["model"] only: another --model
# falls back to its own constructor defaults for any model flag not given.
DEFAULTS: dict[str, Any] = {
    "model": "convnet",
    "num_filters": [16, 32, 64],
    "filter_size": 3,
    "hidden_dims": [],
    "pool_every": 1,
    "batchnorm": True,
    "dropout": 0.0,
    "weight_scale": None,  # None: He initialisation
    "reg": 0.0,
    "update_rule": "adam",
    "lr": 2e-3,
    "lr_decay": 0.5,
    "batch_size": 64,
    "epochs": 3,
    "num_training": 49000,
    "num_validation": 1000,
    "num_test": 1000,
    "dtype": "float32",
    "seed": 0,
}

MODEL_FLAGS = (
    "num_filters",
    "filter_size",
    "hidden_dims",
    "pool_every",
    "batchnorm",
    "dropout",
    "weight_scale",
    "reg",
)
# Constructor keywords each model flag may fill, first match wins.
_MODEL_KWARGS = {
    "num_filters": ("num_filters",),
    "filter_size": ("filter_size",),
    "hidden_dims": ("hidden_dims", "hidden_dim"),
    "pool_every": ("pool_every",),
    "batchnorm": ("use_batchnorm",),
    "dropout": ("dropout",),
    "weight_scale": ("weight_scale",),
    "reg": ("reg",),
}
# Flags that only steer this invocation; a resumed run may change them freely.
_RUN_CONTROL = ("epochs",)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _default(key: str) -> str:
    value = DEFAULTS[key]
    if isinstance(value, list):
        value = " ".join(map(str, value)) or "none"
    if key in MODEL_FLAGS:
        # Model flags fall back to each model's own constructor default, so say whose.
        return f"(default for {DEFAULTS['model']}: {value}; other models: their own default)"
    return f"(default: {value})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nndl`` with its three subcommands."""
    parser = argparse.ArgumentParser(
        prog="nndl",
        description="Train, evaluate and use NumPy CNNs on CIFAR-10.",
        epilog="Run 'nndl COMMAND --help' for the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"nndl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model on CIFAR-10. Every setting not given comes from the "
        "built-in default run (a batch-normalised ConvNet trained with Adam). The run "
        "folder receives config.json, metrics.jsonl, best_model.npz, last_model.npz, "
        "preprocess.npz, checkpoint.npz and PNG plots.",
    )
    m = t.add_argument_group("model")
    m.add_argument("--model", choices=sorted(MODELS), help=f"model to train {_default('model')}")
    m.add_argument(
        "--num-filters",
        type=int,
        nargs="+",
        metavar="F",
        help=f"filters per conv layer; one value for three_layer_convnet {_default('num_filters')}",
    )
    m.add_argument(
        "--filter-size",
        type=int,
        metavar="K",
        help=f"conv filter height and width {_default('filter_size')}",
    )
    m.add_argument(
        "--hidden-dims",
        "--hidden-dim",
        dest="hidden_dims",
        type=int,
        nargs="+",
        metavar="H",
        help="sizes of the hidden affine layers; one value for "
        f"three_layer_convnet and two_layer_net {_default('hidden_dims')}",
    )
    m.add_argument(
        "--pool-every",
        type=int,
        metavar="N",
        help=f"convnet: 2x2 max pool after every N convs {_default('pool_every')}",
    )
    m.add_argument(
        "--batchnorm",
        action=argparse.BooleanOptionalAction,
        help=f"use batch normalisation {_default('batchnorm')}",
    )
    m.add_argument(
        "--dropout",
        type=float,
        metavar="P",
        help=f"dropout keep probability, 0 for none {_default('dropout')}",
    )
    m.add_argument(
        "--weight-scale",
        type=float,
        metavar="STD",
        help="std of the initial weights; convnet default: He initialisation",
    )
    m.add_argument("--reg", type=float, help=f"L2 regularisation strength {_default('reg')}")
    m.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help=f"floating point type of data and parameters {_default('dtype')}",
    )

    o = t.add_argument_group("optimisation")
    o.add_argument(
        "--update-rule",
        choices=sorted(UPDATE_RULES),
        help=f"update rule from nndl.optim {_default('update_rule')}",
    )
    o.add_argument("--lr", type=float, help=f"initial learning rate {_default('lr')}")
    o.add_argument(
        "--lr-decay",
        type=float,
        help=f"learning rate factor after each epoch {_default('lr_decay')}",
    )
    o.add_argument("--batch-size", type=int, help=f"minibatch size {_default('batch_size')}")
    o.add_argument(
        "--epochs",
        type=int,
        help=f"total epochs (with --resume: the new total) {_default('epochs')}",
    )
    o.add_argument(
        "--seed",
        type=int,
        help=f"seed of initialisation and shuffling {_default('seed')}",
    )
    o.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop training after this many seconds (checked every iteration)",
    )
    o.add_argument(
        "--target-acc",
        type=float,
        metavar="ACC",
        help="stop at the end of the first epoch whose val accuracy reaches ACC",
    )

    d = t.add_argument_group("data")
    d.add_argument(
        "--data-dir",
        help="folder holding cifar-10-batches-py (or that folder "
        "itself); default: $NNDL_DATA_DIR, then the user cache (downloads if absent)",
    )
    d.add_argument(
        "--num-training", type=int, metavar="N", help=f"training images {_default('num_training')}"
    )
    d.add_argument(
        "--num-validation",
        type=int,
        metavar="N",
        help=f"validation images (after the training ones) {_default('num_validation')}",
    )
    d.add_argument(
        "--num-test",
        type=int,
        metavar="N",
        help=f"test images for 'nndl evaluate' {_default('num_test')}",
    )

    r = t.add_argument_group("run folder and output")
    r.add_argument(
        "--out", metavar="RUN_DIR", help="run folder to write (default: runs/YYYYmmdd-HHMMSS)"
    )
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint.npz (up to --epochs)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--no-plots", action="store_true", help="do not write the PNG plots (matplotlib not needed)"
    )

    e = sub.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a run's best model on the test (or val) split: "
        "prints accuracy, per-class accuracy and the confusion matrix and "
        "writes evaluation.json into the run folder.",
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

    p = sub.add_parser(
        "predict",
        help="classify image files with a trained model",
        description="Classify PNG/JPEG images with a run's best model: each is "
        "converted to RGB, resized to the model's input size and preprocessed "
        "as in training; prints the most probable classes.",
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
    return parser


# --- train ---------------------------------------------------------------------------


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    given = _explicit(args)
    model = given.get("model", DEFAULTS["model"])
    settings = {k: v for k, v in DEFAULTS.items() if k not in MODEL_FLAGS}
    if model == DEFAULTS["model"]:
        settings.update({k: DEFAULTS[k] for k in MODEL_FLAGS})
    settings.update(given)
    settings["model"] = model
    for key in ("batch_size", "epochs", "num_training", "num_validation"):
        if settings[key] < 1:
            raise CLIError(f"{_flag(key)} must be at least 1, got {settings[key]}")
    if settings["lr"] <= 0:
        raise CLIError(f"--lr must be positive, got {settings['lr']}")
    return settings


def build_kwargs(
    settings: dict[str, Any],
    input_dim: tuple[int, ...],
    num_classes: int,
    explicit: Sequence[str] = (),
) -> dict[str, Any]:
    """Constructor keywords for ``settings['model']`` from CLI settings and the data shape.

    A model flag the model's constructor does not take is an error when it was given
    explicitly and is skipped otherwise.
    """
    name = settings["model"]
    params = inspect.signature(MODELS[name]).parameters
    kwargs: dict[str, Any] = {}
    for flag in MODEL_FLAGS:
        if flag not in settings:
            continue
        key = next((k for k in _MODEL_KWARGS[flag] if k in params), None)
        if key is None:
            if flag in explicit:
                raise CLIError(f"{_flag(flag)} does not apply to model {name}")
            continue
        value = settings[flag]
        if isinstance(value, list):
            default = params[key].default
            if key == "hidden_dim" or isinstance(default, (int, np.integer)):
                if len(value) != 1:
                    raise CLIError(f"model {name} takes one value for {_flag(flag)}, got {value}")
                value = value[0]
            else:
                value = tuple(value)
        kwargs[key] = value
    if "input_dim" in params:
        as_int = isinstance(params["input_dim"].default, (int, np.integer))
        kwargs["input_dim"] = int(np.prod(input_dim)) if as_int else tuple(input_dim)
    for key, value in (
        ("num_classes", num_classes),
        ("dtype", np.dtype(settings["dtype"]).type),
        ("seed", settings["seed"]),
    ):
        if key in params:
            kwargs[key] = value
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty
        and k not in kwargs
        and p.kind is not p.VAR_KEYWORD
        and k != "self"
    ]
    if missing:
        raise CLIError(f"model {name} needs {', '.join(_flag(k) for k in missing)}")
    return kwargs


def cmd_train(args: argparse.Namespace) -> int:
    from .solver import Solver

    t_start = time.perf_counter()
    if args.resume and not args.out:
        raise CLIError("--resume needs --out RUN_DIR (the run to continue)")
    if args.out is None:
        args.out = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    run = RunFolder(args.out)
    if not args.no_plots:
        require_matplotlib("--no-plots")
    explicit = _explicit(args)
    if args.resume:
        config = run.read_config(need_checkpoint=True)
        settings = config["settings"]
        fixed = {k: v for k, v in explicit.items() if k not in _RUN_CONTROL}
        changed = [k for k, v in fixed.items() if settings.get(k, v) != v]
        if changed:
            raise CLIError(
                "cannot change " + ", ".join(map(_flag, changed)) + " when resuming; "
                "start a new run folder instead"
            )
        settings.update({k: explicit[k] for k in _RUN_CONTROL if k in explicit})
    else:
        if run.holds_run():
            raise CLIError(
                f"{run.path} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        settings = _settings(args)
        config = None
    build_kwargs(settings, (3, 32, 32), 10, explicit)  # flag errors before loading data
    # The stopping rules belong to this invocation; a resumed run does not inherit them.
    settings.update(time_limit=args.time_limit, target_acc=args.target_acc)
    data_dir = run.data_dir(args.data_dir, config)
    data, info = load_cifar(settings, data_dir=data_dir, progress=not args.quiet)
    kwargs = build_kwargs(settings, info["input_dim"], len(info["class_names"]), explicit)
    model = build_model(settings["model"], **kwargs)
    dropout_param = getattr(model, "dropout_param", None)
    if dropout_param:
        # A classic seed pins the dropout mask for gradient checks; training wants a
        # fresh mask each step, drawn from the model's seeded Generator.
        dropout_param.pop("seed", None)
    if config is None:
        config = {
            "nndl_version": __version__,
            "command": " ".join(["nndl", *args.argv]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings,
            "model": {"name": model.name, "config": model.config},
            "data": {k: v for k, v in info.items() if k != "mean_image"},
            "numpy_version": np.__version__,
            "python_version": sys.version.split()[0],
        }
        run.create()
        run.write_preprocess(info["mean_image"], info["class_names"], settings["dtype"])
        run.write_metrics([])
    else:
        config.setdefault("resumed", []).append(
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epochs": settings["epochs"]}
        )
        config["settings"] = settings
    run.write_config(config)

    recorder = RunRecorder(
        run,
        info["class_names"],
        input_dim=info["input_dim"],
        quiet=args.quiet,
        time_limit=settings.get("time_limit"),
        target_acc=settings.get("target_acc"),
        plots=not args.no_plots,
    )
    solver = Solver(
        model,
        {k: data[k] for k in ("X_train", "y_train", "X_val", "y_val")},
        update_rule=settings["update_rule"],
        optim_config={"learning_rate": settings["lr"]},
        lr_decay=settings["lr_decay"],
        batch_size=settings["batch_size"],
        num_epochs=settings["epochs"],
        verbose=False,
        callbacks=[recorder],
        seed=settings["seed"],
    )
    if args.resume:
        solver.load_checkpoint(run.checkpoint)
        if solver.epoch >= settings["epochs"]:
            raise CLIError(
                f"{run.path} has already trained {solver.epoch} epochs; "
                f"pass --epochs above {solver.epoch} to continue"
            )
        recorder.resume_from(solver)
    recorder.start_wall = t_start
    try:
        solver.train()
    except KeyboardInterrupt:
        recorder.finish(solver, interrupted=True)
        print(f"interrupted; continue with: nndl train --out {run.path} --resume", file=sys.stderr)
        return 130
    recorder.finish(solver)
    return 0


# --- evaluate and predict ------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = RunFolder(args.run_dir)
    config = run.read_config()
    model, extra, pre = run.load_model(last=args.last)
    if args.plot:
        require_matplotlib()
    data_dir = run.data_dir(args.data_dir, config)
    data, _ = load_cifar(config["settings"], data_dir=data_dir, subtract_mean=False)
    key = "test" if args.split == "test" else "val"
    X = (data[f"X_{key}"] - pre["mean_image"]).astype(pre["dtype"], copy=False)
    names = pre["class_names"]
    which = run.last.name if args.last else run.best.name
    result = {"model_file": which, "epoch": extra.get("epoch"), "split": args.split}
    result.update(evaluate_scores(batched_scores(model, X), data[f"y_{key}"], names))
    cm = np.array(result["confusion_matrix"])
    print(evaluation_report(result))
    run.write_json("evaluation.json", result)
    if args.plot:
        from .plots import plot_confusion_matrix

        plot_confusion_matrix(cm, names, path=run.path / "confusion_matrix.png")
        print(f"wrote {run.path / 'confusion_matrix.png'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
    run = RunFolder(args.run_dir)
    pre = run.read_preprocess()  # a missing run folder is reported before the images
    X = load_images(args.images, pre["mean_image"].shape[1:])
    model, _, pre = run.load_model(last=args.last)
    X = (X - pre["mean_image"]).astype(pre["dtype"], copy=False)
    probs = softmax(batched_scores(model, X))
    names = pre["class_names"]
    k = min(args.top_k, len(names))
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.4f}" for i in top))
    return 0


_COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nndl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Usage errors (bad flags, missing run folder, unreadable image, unknown model) print
    ``nndl COMMAND: error: ...`` on stderr and return 2, as argparse does.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")  # the interpreter's final flush must not fail
        return 141
    except (CLIError, ValueError, OSError, ImportError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
