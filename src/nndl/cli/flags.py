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
import json
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models import MODELS
from ..optim import UPDATE_RULES
from ..train.augment import PAD_MODES, TTA_MODES
from .errors import CLIError
from .inputs import read_arch
from .presets import DEFAULT_PRESET, PRESETS
from .recipe import (
    check_combination,
    is_param_groups,
    is_schedule,
    parse_param_groups,
    parse_schedule,
    with_warmup,
)

__all__ = [
    "Flag",
    "FLAGS",
    "DEFAULTS",
    "MODEL_FLAGS",
    "MODEL_KWARGS",
    "SETTING_RULES",
    "REQUIRED_SETTINGS",
    "RUN_CONTROL",
    "NEW_DEFAULTS",
    "flag_name",
    "finite_float",
    "add_train_flags",
    "check_settings",
    "check_flags",
    "settings_from_args",
    "presets_help",
]

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


def _is_real(v: Any, low: float, high: float = math.inf, above=False, below=False) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return False
    return (v > low if above else v >= low) and (v < high if below else v <= high)


def _int(minimum: int, maximum: int | None = None) -> tuple[str, Callable[[Any], bool]]:
    if maximum is None:
        return f"an integer >= {minimum}", lambda v: _is_int(v, minimum)
    return f"an integer in [{minimum}, {maximum}]", lambda v: _is_int(v, minimum) and v <= maximum


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


def _real(low: float, high: float = math.inf, above=False, optional=False, what="", below=False):
    what = what or (f"a number {'>' if above else '>='} {low:g}" if high == math.inf
                    else f"a number in [{low:g}, {high:g}]")  # fmt: skip
    return what, lambda v: (optional and v is None) or _is_real(v, low, high, above, below)


_BOOLEAN = ("true or false", lambda v: isinstance(v, bool))
NORMALIZE = ["mean_image", "channel"]
FLIPS = ["none", "random", "alternating"]


def _one_of(choices: Callable[[], Sequence[str]]) -> tuple[str, Callable[[Any], bool]]:
    return f"one of {sorted(choices())}", lambda v: isinstance(v, str) and v in choices()


def _dataset(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _image_size(v: Any) -> bool:
    return v is None or (isinstance(v, list) and len(v) == 2 and all(_is_int(x, 1) for x in v))


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
    new: bool = False

    @property
    def flag(self) -> str:
        return flag_name(self.key)


P, M, OPT, AVG = "preset", "model", "optimisation", "learning-rate schedule and averaging"
D, AUG, EV, R = "data", "augmentation", "evaluation", "run folder and output"
_BOOL = {"action": argparse.BooleanOptionalAction}
# The default run: chosen for time to 65% validation accuracy on a 2-core CPU, as
# benchmarks/bench_train.py measures it. A narrow conv net (16-32-64 filters, batch
# norm); 32-64-128 takes twice as long a step. The 65 preset (nndl.cli.presets.MAIN_JOB)
# evaluates it through an average of the weights.
FLAGS: tuple[Flag, ...] = (
    Flag("preset", P, "start from the settings of a preset (listed below); flags given "
         "override it", DEFAULT_PRESET, _one_of(lambda: list(PRESETS)),
         options={"choices": list(PRESETS), "metavar": "NAME"}, new=True),
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
    Flag("batchnorm", M, "use batch normalisation", True, _BOOLEAN, ("use_batchnorm",),
         options=_BOOL),
    Flag("dropout", M, "dropout keep probability, 0 for none", 0.0, _real(0, 1), ("dropout",),
         options={"type": finite_float, "metavar": "P"}),
    Flag("weight_scale", M, "std of the initial weights; convnet default: He initialisation",
         None, _real(0, above=True, optional=True), ("weight_scale",),
         options={"type": finite_float, "metavar": "STD"}),
    Flag("reg", M, "L2 regularisation strength", 0.0, _real(0), ("reg",),
         options={"type": finite_float}),
    Flag("label_smoothing", M, "label smoothing of the softmax loss (network models)",
         rule=_real(0, 1, what="a number in [0, 1)", below=True), kwargs=("label_smoothing",),
         options={"type": finite_float, "metavar": "EPS"}, new=True),
    Flag("dtype", M, "floating point type of data and parameters", "float32",
         ("float32 or float64", lambda v: v in ("float32", "float64")),
         options={"choices": ["float32", "float64"]}),
    Flag("update_rule", OPT, "update rule from nndl.optim", "adam",
         _one_of(lambda: list(UPDATE_RULES)), options={"choices": sorted(UPDATE_RULES)}),
    Flag("lr", OPT, "initial learning rate", 2e-3, _real(0, above=True),
         options={"type": finite_float}),
    Flag("lr_decay", OPT, "learning rate factor after each epoch (without --schedule)", 0.5,
         _real(0, above=True), options={"type": finite_float}),
    Flag("momentum", OPT, "momentum of the update rule (default: the rule's own)", None,
         _real(0, 1, optional=True, below=True, what="a number in [0, 1)"),
         options={"type": finite_float}, new=True),
    Flag("weight_decay", OPT, "weight decay (default: the rule's own; decoupled unless "
         "--coupled-decay)", None, _real(0, optional=True), options={"type": finite_float},
         new=True),
    Flag("coupled_decay", OPT, "apply --weight-decay as L2 through the gradient and momentum "
         "(PyTorch SGD's weight_decay) instead of decoupled", False, _BOOLEAN, options=_BOOL,
         new=True),
    Flag("bias_decay", OPT, "weight decay on biases and batch-norm parameters too", False,
         _BOOLEAN, options=_BOOL, new=True),
    Flag("bn_bias_lr", OPT, "learning-rate multiplier of the batch-norm biases (their weight "
         "decay is divided by it)", None, _real(0, above=True, optional=True),
         options={"type": finite_float, "metavar": "M"}, new=True),
    Flag("param_groups", OPT, "parameter groups as a JSON list in the Solver's form, after "
         "the groups the flags above make, e.g. Muon for the conv filters: "
         "'[{\"params\": \"*conv.W\", \"update_rule\": \"muon\", \"optim_config\": "
         "{\"learning_rate\": 0.24, \"momentum\": 0.6}}]'", None,
         ("a list of parameter groups", is_param_groups),
         options={"type": parse_param_groups, "metavar": "JSON"}, new=True),
    Flag("batch_size", OPT, "minibatch size", 64, _int(1), options={"type": int}),
    Flag("epochs", OPT, "total epochs (with --resume: the new total)", 3, _int(1),
         run_control=True, options={"type": int}),
    Flag("schedule", AVG, "learning-rate schedule per iteration: a name from nndl.schedules "
         "or a JSON spec such as '{\"name\": \"cosine\", \"end\": 0.01}' (default: "
         "per-epoch --lr-decay)", None, ("a schedule spec", is_schedule),
         options={"type": parse_schedule, "metavar": "NAME|JSON"}, new=True),
    Flag("warmup", AVG, "fraction of training the schedule warms up for", None,
         _real(0, 1, optional=True), options={"type": finite_float, "metavar": "F"}, new=True),
    Flag("ema", AVG, "evaluate (and keep as best) an exponential moving average of the "
         "weights with this decay per average; 0: none", None,
         _real(0, 1, optional=True, below=True, what="a number in [0, 1)"),
         options={"type": finite_float, "metavar": "DECAY"}, new=True),
    Flag("ema_every", AVG, "average every N steps", 1, _int(1), options={"type": int},
         new=True),
    Flag("ema_power", AVG, "decay of the average after step t of T: DECAY * (t/T)**P", 0.0,
         _real(0), options={"type": finite_float, "metavar": "P"}, new=True),
    Flag("lookahead", AVG, "write the average back into the weights (and at the end)", False,
         _BOOLEAN, options=_BOOL, new=True),
    Flag("recompute", OPT, "keep less in memory: each conv layer caches its input and its "
         "backward pass rebuilds the transformed copy (network models; the same results; "
         "its time cost depends on the net and batch: see the Results page)", False, _BOOLEAN,
         run_control=True,
         options=_BOOL, new=True),
    Flag("seed", OPT, "seed of initialisation and shuffling", 0, _int(0), options={"type": int}),
    Flag("time_limit", OPT, "stop training after this many seconds (checked every iteration)",
         rule=_real(0, optional=True, what="a number >= 0 (seconds)"), setting=False,
         options={"type": finite_float, "metavar": "SECONDS"}),
    Flag("target_acc", OPT, "stop at the end of the first epoch whose val accuracy reaches ACC",
         rule=_real(0, 1, optional=True), setting=False,
         options={"type": finite_float, "metavar": "ACC"}),
    Flag("dataset", D, "the data: a name (cifar10, cifar100, cifar100_coarse, mnist, "
         "fashion_mnist; downloaded into --data-dir if missing) or a folder of images "
         "(ROOT/<class>/*.png|jpg, or ROOT/train/<class>/... with ROOT/test/<class>/...); "
         "the model is built for its image shape and classes", "cifar10",
         ("a data set name or a folder", _dataset), options={"metavar": "NAME|PATH"},
         new=True),
    Flag("image_size", D, "an image folder's images resized to H x W (LANCZOS); needed when "
         "their sizes differ (default: as stored)", None, ("two integers >= 1 or null",
         _image_size), options={"type": int, "nargs": 2, "metavar": ("H", "W")}, new=True),
    Flag("channels", D, "an image folder's images as 1 (grayscale) or 3 (RGB) channels "
         "(default: 1 if every image is grayscale, else 3)", None,
         ("1, 3 or null", lambda v: v in (None, 1, 3) and not isinstance(v, bool)),
         options={"type": int, "choices": [1, 3]}, new=True),
    Flag("num_training", D, "training images (with a data set other than cifar10, when not "
         "given: every training image not used for validation)", 49000, _int(1),
         options={"type": int, "metavar": "N"}),
    Flag("num_validation", D, "validation images (after the training ones); 0: none, the "
         "best model is the last (other data sets, when not given: 1000, or a tenth of a "
         "smaller training set)", 1000, _int(0), options={"type": int, "metavar": "N"}),
    Flag("num_test", D, "test images for 'nndl evaluate' and --test-at-end (other data sets, "
         "when not given: all of them)", 1000, _int(0), options={"type": int, "metavar": "N"}),
    Flag("normalize", D, "input preprocessing: subtract the mean image, or per-channel "
         "(x - mean) / std", "mean_image", _one_of(lambda: NORMALIZE),
         options={"choices": NORMALIZE}, new=True),
    Flag("crop_pad", AUG, "random translation by up to N pixels (pad and crop)", 0,
         _int(0, 31), options={"type": int, "metavar": "N"}, new=True),
    Flag("crop_mode", AUG, "padding of --crop-pad", "reflect", _one_of(lambda: PAD_MODES),
         options={"choices": sorted(PAD_MODES)}, new=True),
    Flag("flip", AUG, "horizontal flips: each image at random, or alternating epochs "
         "(airbench94)", "none", _one_of(lambda: FLIPS), options={"choices": FLIPS}, new=True),
    Flag("cutout", AUG, "zero a random N x N square of each image", 0, _int(0, 32),
         options={"type": int, "metavar": "N"}, new=True),
    Flag("tta", EV, "test-time augmentation of --test-at-end", "none",
         _one_of(lambda: TTA_MODES), options={"choices": TTA_MODES}, new=True),
    Flag("test_at_end", EV, "evaluate the best model on the --num-test test images after "
         "training (into config.json and evaluation.json)", False, _BOOLEAN, options=_BOOL,
         new=True),
    Flag("data_dir", D, "folder holding the named data set (cifar-10-batches-py, "
         "cifar-100-python, mnist, fashion-mnist; or that folder itself); default: "
         "$NNDL_DATA_DIR, then the user cache (downloads if absent)", setting=False),
    Flag("out", R, "run folder to write (default: runs/YYYYmmdd-HHMMSS)", setting=False,
         options={"metavar": "RUN_DIR"}),
    Flag("resume", R, "continue the run in --out from its checkpoint.npz (up to --epochs)",
         setting=False, options={"action": "store_true"}),
    Flag("quiet", R, "no progress bar", setting=False, options={"action": "store_true"}),
    Flag("no_plots", R, "do not write the PNG plots (matplotlib not needed)", setting=False,
         options={"action": "store_true"}),
    Flag("no_memory_check", R, "start even if the planned memory (parameters, optimiser "
         "state, activations, data) exceeds the memory this machine has available",
         setting=False, options={"action": "store_true"}),
)  # fmt: skip
_BY_KEY = {f.key: f for f in FLAGS}

DEFAULTS: dict[str, Any] = {f.key: f.default for f in FLAGS if f.default is not _UNSET}
"""The default run: every setting not given on the command line (``nndl train --help``)."""
MODEL_FLAGS = tuple(f.key for f in FLAGS if f.kwargs)
MODEL_KWARGS = {f.key: f.kwargs for f in FLAGS if f.kwargs}
"""Each model flag's constructor keywords (the first one a model takes is filled)."""
SETTING_RULES = {f.key: f.rule for f in FLAGS if f.rule is not None}
RUN_CONTROL = tuple(f.key for f in FLAGS if f.run_control)
# The settings a run cannot do without (model flags may be absent: that model's defaults;
# settings added since nndl 0.1.0 take their defaults, which mean what 0.1.0 did).
REQUIRED_SETTINGS = tuple(k for k in DEFAULTS if k not in MODEL_FLAGS and not _BY_KEY[k].new)
NEW_DEFAULTS = {k: v for k, v in DEFAULTS.items() if _BY_KEY[k].new}


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def _help(f: Flag) -> str:
    says_default = f.default is None and "default" in f.help  # its own words for None
    if f.default is _UNSET or f.key == "weight_scale" or says_default:
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
    """Every setting of a new run: the flags given, over the preset's settings (``--preset``,
    default :data:`~nndl.cli.presets.DEFAULT_PRESET`), over :data:`DEFAULTS` (model
    settings only for the default model; ``--arch`` means ``--model network``). A
    ``--schedule`` replaces the per-epoch ``--lr-decay`` (1 unless given) and takes
    ``--warmup`` into its spec."""
    given = check_flags(args)
    preset = dict(PRESETS[given.get("preset", DEFAULT_PRESET)].settings)
    chosen = {**preset, **given}
    arch = chosen.get("arch")
    model = chosen.get("model", "network" if arch is not None else DEFAULTS["model"])
    settings = {k: v for k, v in DEFAULTS.items() if k not in MODEL_FLAGS}
    if model == DEFAULTS["model"]:
        settings.update({k: DEFAULTS[k] for k in MODEL_FLAGS if k in DEFAULTS})
    settings.update(chosen)
    settings["model"] = model
    settings.setdefault("preset", DEFAULT_PRESET)
    if settings.get("schedule") is not None:
        if "lr_decay" not in chosen:
            settings["lr_decay"] = 1.0
        if settings.get("warmup") is not None:
            settings["schedule"] = with_warmup(settings["schedule"], settings["warmup"])
    check_settings(settings, flag_name)
    check_combination(settings, flag_name)
    return settings


def _shown(value: Any) -> str:
    """A preset's value as it would be typed after its flag."""
    if isinstance(value, dict):
        return "'" + json.dumps(value) + "'"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def presets_help() -> str:
    """The presets and their flags, for the end of ``nndl train --help``."""
    lines = ["presets (--preset NAME; flags given with it override it):"]
    wrap = {"width": 88, "break_on_hyphens": False, "break_long_words": False}
    for name, preset in PRESETS.items():
        lines += textwrap.wrap(f"{name}: {preset.description}", initial_indent="  ",
                               subsequent_indent="      ", **wrap)  # fmt: skip
        flags = []
        for key, value in preset.settings.items():
            if key == "arch":
                flags.append(f"--arch <{preset.arch_note}>")
            elif isinstance(value, bool):
                flags.append(flag_name(key) if value else "--no-" + flag_name(key)[2:])
            else:
                flags.append(f"{flag_name(key)} {_shown(value)}")
        lines += textwrap.wrap(" ".join(flags) or "(the defaults above)", initial_indent="      ",
                               subsequent_indent="      ", **wrap)  # fmt: skip
    return "\n".join(lines)
