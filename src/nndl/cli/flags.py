"""The flags of ``nndl train``: ONE table (:data:`FLAGS`) that drives the parser, the default
run, the checks of every setting and the model's constructor keywords.

A row says everything about one setting: its flag, help text and parser options, its
value in the default run, what a valid value is (the same check holds for a flag and for
a run's config.json read back), which model keywords it fills, and whether a resumed
run may change it. ``DEFAULTS``, ``MODEL_FLAGS``, ``SETTING_RULES`` and the parser are
all derived from it; to add a setting, add a row.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.checkpoint import MAX_FILE_BYTES
from ..models import MODELS
from ..optim import UPDATE_RULES
from .errors import CLIError
from .inputs import read_arch

__all__ = [
    "Flag",
    "FLAGS",
    "DEFAULTS",
    "MODEL_FLAGS",
    "SETTING_RULES",
    "REQUIRED_SETTINGS",
    "RUN_CONTROL",
    "MAX_PARAM_BYTES",
    "flag_name",
    "finite_float",
    "add_train_flags",
    "check_settings",
    "check_flags",
    "settings_from_args",
    "build_kwargs",
    "preflight",
]

# A checkpoint holds about four copies of the parameters (the current and best ones and
# Adam's two moments) and must stay loadable (nndl.io.checkpoint.MAX_FILE_BYTES).
MAX_PARAM_BYTES = MAX_FILE_BYTES // 4
_UNSET = object()  # no value in the default run


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


def _int(minimum: int) -> tuple[str, Callable[[Any], bool]]:
    return f"an integer >= {minimum}", lambda v: _is_int(v, minimum)


def _ints(minimum: int, nonempty: bool) -> tuple[str, Callable[[Any], bool]]:
    what = "one or more integers >= 1" if nonempty else f"integers >= {minimum}"
    return (
        what,
        lambda v: (
            isinstance(v, list)
            and (bool(v) or not nonempty)
            and all(_is_int(x, minimum) for x in v)
        ),
    )


def _real(low: float, high: float = math.inf, above: bool = False, optional=False, what=""):
    what = what or (f"a number {'>' if above else '>='} {low:g}" if high == math.inf
                    else f"a number in [{low:g}, {high:g}]")  # fmt: skip
    return what, lambda v: (optional and v is None) or _is_real(v, low, high, above)


def _one_of(choices: Callable[[], Sequence[str]]) -> tuple[str, Callable[[Any], bool]]:
    return f"one of {sorted(choices())}", lambda v: isinstance(v, str) and v in choices()


def _spec(v: Any) -> bool:
    return v is None or (isinstance(v, list) and bool(v))


@dataclass(frozen=True)
class Flag:
    """One setting of ``nndl train``.

    ``key`` is the settings key (the flag is ``--key-with-dashes``); ``default`` its value
    in the default run (model settings apply to the default model only); ``rule`` is
    ``(description, check)``; ``kwargs`` the model constructor keywords it may fill,
    first match wins; ``run_control`` marks settings a resumed run may change;
    ``setting=False`` flags steer one invocation and are not recorded.
    """

    key: str
    group: str
    help: str
    default: Any = _UNSET
    rule: tuple[str, Callable[[Any], bool]] | None = None
    kwargs: tuple[str, ...] = ()
    run_control: bool = False
    setting: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # for add_argument
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return flag_name(self.key)


M, OPT, D, R = "model", "optimisation", "data", "run folder and output"
# The default run: chosen for time to 65% validation accuracy on a 2-core CPU, as
# benchmarks/bench_train.py measures it. A narrow conv net (16-32-64 filters, batch
# norm) passes 65% after two epochs of about 40 s; 32-64-128 takes twice as long a step.
FLAGS: tuple[Flag, ...] = (
    Flag("model", M, "model to train", "convnet", _one_of(lambda: list(MODELS)),
         options={"choices": sorted(MODELS)}),
    Flag("arch", M, "train the architecture spec in FILE.json (a list of nndl.nn layers; "
         "see nndl.nn); implies --model network", rule=("a non-empty list of layers", _spec),
         kwargs=("layers",), options={"metavar": "FILE.json", "type": read_arch}),
    Flag("num_filters", M, "filters per conv layer; one value for three_layer_convnet",
         [16, 32, 64], _ints(1, nonempty=True), ("num_filters",),
         options={"type": int, "nargs": "+", "metavar": "F"}),
    Flag("filter_size", M, "conv filter height and width", 3, _int(1), ("filter_size",),
         options={"type": int, "metavar": "K"}),
    Flag("hidden_dims", M, "sizes of the hidden affine layers; one value for "
         "three_layer_convnet and two_layer_net", [], _ints(1, nonempty=False),
         ("hidden_dims", "hidden_dim"), options={"type": int, "nargs": "+", "metavar": "H"},
         aliases=("--hidden-dim",)),
    Flag("pool_every", M, "convnet: 2x2 max pool after every N convs", 1, _int(1),
         ("pool_every",), options={"type": int, "metavar": "N"}),
    Flag("batchnorm", M, "use batch normalisation", True,
         ("true or false", lambda v: isinstance(v, bool)), ("use_batchnorm",),
         options={"action": argparse.BooleanOptionalAction}),
    Flag("dropout", M, "dropout keep probability, 0 for none", 0.0, _real(0, 1), ("dropout",),
         options={"type": finite_float, "metavar": "P"}),
    Flag("weight_scale", M, "std of the initial weights; convnet default: He initialisation",
         None, _real(0, above=True, optional=True), ("weight_scale",),
         options={"type": finite_float, "metavar": "STD"}),
    Flag("reg", M, "L2 regularisation strength", 0.0, _real(0), ("reg",),
         options={"type": finite_float}),
    Flag("dtype", M, "floating point type of data and parameters", "float32",
         ("float32 or float64", lambda v: v in ("float32", "float64")),
         options={"choices": ["float32", "float64"]}),
    Flag("update_rule", OPT, "update rule from nndl.optim", "adam",
         _one_of(lambda: list(UPDATE_RULES)), options={"choices": sorted(UPDATE_RULES)}),
    Flag("lr", OPT, "initial learning rate", 2e-3, _real(0, above=True),
         options={"type": finite_float}),
    Flag("lr_decay", OPT, "learning rate factor after each epoch", 0.5, _real(0, above=True),
         options={"type": finite_float}),
    Flag("batch_size", OPT, "minibatch size", 64, _int(1), options={"type": int}),
    Flag("epochs", OPT, "total epochs (with --resume: the new total)", 3, _int(1),
         run_control=True, options={"type": int}),
    Flag("seed", OPT, "seed of initialisation and shuffling", 0, _int(0), options={"type": int}),
    Flag("time_limit", OPT, "stop training after this many seconds (checked every iteration)",
         rule=_real(0, optional=True, what="a number >= 0 (seconds)"), setting=False,
         options={"type": finite_float, "metavar": "SECONDS"}),
    Flag("target_acc", OPT, "stop at the end of the first epoch whose val accuracy reaches ACC",
         rule=_real(0, 1, optional=True), setting=False,
         options={"type": finite_float, "metavar": "ACC"}),
    Flag("num_training", D, "training images", 49000, _int(1),
         options={"type": int, "metavar": "N"}),
    Flag("num_validation", D, "validation images (after the training ones)", 1000, _int(1),
         options={"type": int, "metavar": "N"}),
    Flag("num_test", D, "test images for 'nndl evaluate'", 1000, _int(0),
         options={"type": int, "metavar": "N"}),
    Flag("data_dir", D, "folder holding cifar-10-batches-py (or that folder itself); default: "
         "$NNDL_DATA_DIR, then the user cache (downloads if absent)", setting=False),
    Flag("out", R, "run folder to write (default: runs/YYYYmmdd-HHMMSS)", setting=False,
         options={"metavar": "RUN_DIR"}),
    Flag("resume", R, "continue the run in --out from its checkpoint.npz (up to --epochs)",
         setting=False, options={"action": "store_true"}),
    Flag("quiet", R, "no progress bar", setting=False, options={"action": "store_true"}),
    Flag("no_plots", R, "do not write the PNG plots (matplotlib not needed)", setting=False,
         options={"action": "store_true"}),
)  # fmt: skip
_BY_KEY = {f.key: f for f in FLAGS}

DEFAULTS: dict[str, Any] = {f.key: f.default for f in FLAGS if f.default is not _UNSET}
"""The default run: every setting not given on the command line (``nndl train --help``)."""
MODEL_FLAGS = tuple(f.key for f in FLAGS if f.kwargs)
SETTING_RULES = {f.key: f.rule for f in FLAGS if f.rule is not None}
RUN_CONTROL = tuple(f.key for f in FLAGS if f.run_control)
# The settings a run cannot do without (model flags may be absent: that model's defaults).
REQUIRED_SETTINGS = tuple(k for k in DEFAULTS if k not in MODEL_FLAGS)


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def _help(f: Flag) -> str:
    if f.default is _UNSET or f.key == "weight_scale":
        return f.help
    value = f.default
    if isinstance(value, list):
        value = " ".join(map(str, value)) or "none"
    if f.kwargs:
        # Model flags fall back to each model's own constructor default, so say whose.
        return f"{f.help} (default for {DEFAULTS['model']}: {value}; other models: their own)"
    return f"{f.help} (default: {value})"


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The settings of :data:`FLAGS`, in their groups, on the ``train`` parser."""
    groups: dict[str, Any] = {}
    for f in FLAGS:
        if f.group not in groups:
            groups[f.group] = parser.add_argument_group(f.group)
        groups[f.group].add_argument(f.flag, *f.aliases, dest=f.key, help=_help(f), **f.options)


def check_settings(
    settings: Mapping[str, Any], name: Callable[[str], str], required: Sequence[str] = ()
) -> None:
    """Refuse any setting that breaks its rule; ``name(key)`` says where it came from in
    the message (a flag, or a key of a run's config.json)."""
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


def check_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, each checked (the run-stopping flags included)."""
    given = {f.key: getattr(args, f.key) for f in FLAGS if getattr(args, f.key, None) is not None}
    check_settings(given, flag_name)
    return {k: v for k, v in given.items() if _BY_KEY[k].setting}


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of a new run: the flags given, the rest from :data:`DEFAULTS` (model
    settings only for the default model; ``--arch`` means ``--model network``)."""
    given = check_flags(args)
    model = given.get("model", "network" if given.get("arch") is not None else DEFAULTS["model"])
    settings = {k: v for k, v in DEFAULTS.items() if k not in MODEL_FLAGS}
    if model == DEFAULTS["model"]:
        settings.update({k: DEFAULTS[k] for k in MODEL_FLAGS if k in DEFAULTS})
    settings.update(given)
    settings["model"] = model
    check_settings(settings, flag_name)
    return settings


def _refuse(flag: str, name: str) -> CLIError:
    if name == "network":
        return CLIError(f"{flag_name(flag)} does not apply to --arch (the spec is the model)")
    return CLIError(f"{flag_name(flag)} does not apply to model {name}")


def build_kwargs(
    settings: Mapping[str, Any],
    input_dim: Sequence[int],
    num_classes: int,
    explicit: Sequence[str] = (),
) -> dict[str, Any]:
    """Constructor keywords for ``settings['model']`` from the settings and the data shape.

    A model flag the model's constructor does not take is an error when it was given
    explicitly and is skipped otherwise.
    """
    name = settings["model"]
    params = inspect.signature(MODELS[name]).parameters
    kwargs: dict[str, Any] = {}
    for flag in MODEL_FLAGS:
        if flag not in settings:
            continue
        key = next((k for k in _BY_KEY[flag].kwargs if k in params), None)
        if key is None:
            if flag in explicit:
                raise _refuse(flag, name)
            continue
        kwargs[key] = _model_value(name, flag, key, settings[flag], params[key].default)
    if "input_dim" in params:
        as_int = isinstance(params["input_dim"].default, (int, np.integer))
        kwargs["input_dim"] = int(np.prod(input_dim)) if as_int else tuple(input_dim)
    for key, value in (("num_classes", num_classes), ("dtype", np.dtype(settings["dtype"]).type),
                       ("seed", settings["seed"])):  # fmt: skip
        if key in params:
            kwargs[key] = value
    missing = [k for k, p in params.items()
               if p.default is inspect.Parameter.empty and k not in kwargs]  # fmt: skip
    if missing:
        needs = {"layers": "--arch FILE.json"}
        raise CLIError(
            f"model {name} needs {', '.join(needs.get(k, flag_name(k)) for k in missing)}"
        )
    return kwargs


def _model_value(name: str, flag: str, key: str, value: Any, default: Any) -> Any:
    """A list setting as the constructor takes it: one int, or a tuple."""
    if not isinstance(value, list) or key == "layers":
        return value
    if key == "hidden_dim" or isinstance(default, (int, np.integer)):
        if len(value) != 1:
            raise CLIError(f"model {name} takes one value for {flag_name(flag)}, got {value}")
        return value[0]
    return tuple(value)


def preflight(
    settings: Mapping[str, Any],
    explicit: Sequence[str] = (),
    input_dim: Sequence[int] = (3, 32, 32),
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
    name = settings["model"]
    try:
        shapes = MODELS[name].param_shapes(**kwargs)
    except (TypeError, ValueError) as exc:
        where = "--arch" if name == "network" else f"model {name}"
        raise CLIError(f"{where}: {exc}") from None
    count = sum(math.prod(shape) for shape in shapes.values())
    nbytes = count * np.dtype(settings["dtype"]).itemsize
    if nbytes > MAX_PARAM_BYTES:
        raise CLIError(
            f"model {name} would hold {count:,} parameters ({nbytes / 2**30:.1f} GiB); at "
            f"most {MAX_PARAM_BYTES / 2**30:.1f} GiB: use fewer --num-filters or --hidden-dims"
        )
    return kwargs
