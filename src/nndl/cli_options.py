"""The flags of ``nndl train``, their defaults, and how they become a model's keywords.

``DEFAULTS`` is the one place where the default run is defined; ``nndl train --help``
shows it. :mod:`nndl.cli` runs the commands.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import __version__
from .checkpoint import MAX_FILE_BYTES
from .models import MODELS
from .optim import UPDATE_RULES
from .run_dir import CLIError

# The default run, used for every setting not given on the command line; tune it here.
# Chosen for time to 65% validation accuracy on a 2-core CPU, as benchmarks/bench_train.py
# measures it: a narrow conv net (16-32-64 filters, batch norm) passes 65% after two epochs
# of about 40 s; 32-64-128 (`-- --num-filters 32 64 128`) takes twice as long per step.
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
RUN_CONTROL = ("epochs",)
# A checkpoint holds about four copies of the parameters (the current and best ones and
# Adam's two moments) and must stay loadable (nndl.checkpoint.MAX_FILE_BYTES).
MAX_PARAM_BYTES = MAX_FILE_BYTES // 4


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _is_int(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_real(v: Any, low: float, high: float = math.inf, above: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return False
    return (v > low if above else v >= low) and v <= high


def _ints(minimum: int, nonempty: bool) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, list) and (bool(v) or not nonempty) and all(_is_int(x, minimum) for x in v)
    )


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


# What every setting must be, as (description, check); the same rules hold for flags and
# for the settings a resumed or evaluated run reads back from its config.json.
SETTING_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model": (f"one of {sorted(MODELS)}", lambda v: isinstance(v, str) and v in MODELS),
    "num_filters": ("one or more integers >= 1", _ints(1, nonempty=True)),
    "filter_size": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "hidden_dims": ("integers >= 1", _ints(1, nonempty=False)),
    "pool_every": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "batchnorm": ("true or false", lambda v: isinstance(v, bool)),
    "dropout": ("a number in [0, 1]", lambda v: _is_real(v, 0, 1)),
    "weight_scale": ("a number > 0", _optional(lambda v: _is_real(v, 0, above=True))),
    "reg": ("a number >= 0", lambda v: _is_real(v, 0)),
    "update_rule": (
        f"one of {sorted(UPDATE_RULES)}",
        lambda v: isinstance(v, str) and v in UPDATE_RULES,
    ),
    "lr": ("a number > 0", lambda v: _is_real(v, 0, above=True)),
    "lr_decay": ("a number > 0", lambda v: _is_real(v, 0, above=True)),
    "batch_size": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "epochs": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "num_training": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "num_validation": ("an integer >= 1", lambda v: _is_int(v, 1)),
    "num_test": ("an integer >= 0", lambda v: _is_int(v, 0)),
    "dtype": ("float32 or float64", lambda v: v in ("float32", "float64")),
    "seed": ("an integer >= 0", lambda v: _is_int(v, 0)),
    "time_limit": ("a number >= 0 (seconds)", _optional(lambda v: _is_real(v, 0))),
    "target_acc": ("a number in [0, 1]", _optional(lambda v: _is_real(v, 0, 1))),
}
# The settings a run cannot do without (model flags may be absent: that model's defaults).
REQUIRED_SETTINGS = tuple(k for k in DEFAULTS if k not in MODEL_FLAGS)


def check_settings(
    settings: Mapping[str, Any],
    name: Callable[[str], str],
    required: Sequence[str] = (),
) -> None:
    """Refuse any setting that breaks :data:`SETTING_RULES`; ``name(key)`` says where it
    came from in the message (a flag, or a key of a run's config.json)."""
    for key in required:
        if key not in settings:
            raise CLIError(f"{name(key)} is missing")
    for key, value in settings.items():
        if key in SETTING_RULES:
            what, ok = SETTING_RULES[key]
            if not ok(value):
                raise CLIError(f"{name(key)} must be {what}, got {value!r}")
    if "batch_size" in settings and "num_training" in settings:
        if settings["batch_size"] > settings["num_training"]:
            raise CLIError(
                f"{name('batch_size')} {settings['batch_size']} is more than the "
                f"{settings['num_training']} training images ({name('num_training')})"
            )


def flag_name(key: str) -> str:
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
        type=finite_float,
        metavar="P",
        help=f"dropout keep probability, 0 for none {_default('dropout')}",
    )
    m.add_argument(
        "--weight-scale",
        type=finite_float,
        metavar="STD",
        help="std of the initial weights; convnet default: He initialisation",
    )
    m.add_argument("--reg", type=finite_float, help=f"L2 regularisation strength {_default('reg')}")
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
    o.add_argument("--lr", type=finite_float, help=f"initial learning rate {_default('lr')}")
    o.add_argument(
        "--lr-decay",
        type=finite_float,
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
        type=finite_float,
        metavar="SECONDS",
        help="stop training after this many seconds (checked every iteration)",
    )
    o.add_argument(
        "--target-acc",
        type=finite_float,
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

    # Listed for 'nndl --help' only: nndl.cli.main hands 'nndl tune ...' to nndl.tune.main.
    sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna ('nndl tune --help'; the tune extra)",
        add_help=False,
    )

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


def explicit_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}


def check_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (see :func:`explicit_flags`), each checked."""
    given = explicit_flags(args)
    stopping = {k: getattr(args, k, None) for k in ("time_limit", "target_acc")}
    check_settings({**given, **stopping}, flag_name)
    return given


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    given = check_flags(args)
    model = given.get("model", DEFAULTS["model"])
    settings = {k: v for k, v in DEFAULTS.items() if k not in MODEL_FLAGS}
    if model == DEFAULTS["model"]:
        settings.update({k: DEFAULTS[k] for k in MODEL_FLAGS})
    settings.update(given)
    settings["model"] = model
    check_settings(settings, flag_name)
    return settings


def preflight(
    settings: dict[str, Any],
    explicit: Sequence[str] = (),
    input_dim: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Any]:
    """The model's keywords for ``settings``, checked (sizes included) before any data is
    loaded or memory spent: the model's parameter shapes are computed, not allocated."""
    kwargs = build_kwargs(settings, input_dim, num_classes, explicit)
    size = min(input_dim[1:]) if len(input_dim) == 3 else None
    if size is not None and kwargs.get("filter_size", 1) > size:
        raise CLIError(
            f"--filter-size must be at most {size} (the images are "
            f"{input_dim[1]}x{input_dim[2]}), got {kwargs['filter_size']}"
        )
    try:
        shapes = MODELS[settings["model"]].param_shapes(**kwargs)
    except NotImplementedError:
        return kwargs  # a model without a parameter plan is checked when it is built
    except (TypeError, ValueError) as exc:
        raise CLIError(f"model {settings['model']}: {exc}") from None
    count = sum(math.prod(shape) for shape in shapes.values())
    nbytes = count * np.dtype(settings["dtype"]).itemsize
    if nbytes > MAX_PARAM_BYTES:
        raise CLIError(
            f"model {settings['model']} would hold {count:,} parameters ({nbytes / 2**30:.1f} "
            f"GiB); at most {MAX_PARAM_BYTES / 2**30:.1f} GiB: use fewer --num-filters or "
            "--hidden-dims"
        )
    return kwargs


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
                raise CLIError(f"{flag_name(flag)} does not apply to model {name}")
            continue
        value = settings[flag]
        if isinstance(value, list):
            default = params[key].default
            if key == "hidden_dim" or isinstance(default, (int, np.integer)):
                if len(value) != 1:
                    raise CLIError(
                        f"model {name} takes one value for {flag_name(flag)}, got {value}"
                    )
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
        raise CLIError(f"model {name} needs {', '.join(flag_name(k) for k in missing)}")
    return kwargs
