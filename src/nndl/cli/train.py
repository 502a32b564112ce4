"""``nndl train``: train a model on a data set (CIFAR-10 by default, ``--dataset NAME|PATH``)
into a run folder, or continue one (--resume).

The order of the steps matters: bad flags are reported before the run folder is touched,
a bad --out before the data loads, and nothing in the folder changes until the run is
known to start (a refused resume leaves config.json as it was).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from .. import __version__
from ..datasets import DATASETS, is_named
from ..models import MODELS, build_model
from ..train.interrupts import Terminated
from ..train.solver import Solver
from ..train.warmup import KernelWarmup
from .errors import CLIError, cli_path
from .evaluate import evaluate_model
from .flags import (
    DEFAULTS,
    NEW_DEFAULTS,
    REQUIRED_SETTINGS,
    RUN_CONTROL,
    add_train_flags,
    check_flags,
    check_settings,
    flag_name,
    presets_help,
    settings_from_args,
)
from .inputs import DATA_SIZES, load_cifar
from .memory_plan import available_memory, check_memory, plan_memory
from .model_plan import planned_input, preflight
from .presets import PRESETS
from .recipe import solver_kwargs
from .recorder import RunRecorder
from .report import require_matplotlib
from .run_folder import RunFolder

__all__ = ["add_parser", "run"]

DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model on CIFAR-10, another data set or a folder of your own "
        "images (--dataset). Every setting not given comes from the "
        "preset (--preset; by default the built-in default run, a batch-normalised ConvNet "
        "trained with Adam), then the defaults below; --arch FILE.json trains any "
        "architecture spec instead. The run folder receives config.json, metrics.jsonl, "
        "best_model.npz, last_model.npz, preprocess.npz, checkpoint.npz and PNG plots.",
        epilog=presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_flags(t)


def run(args: argparse.Namespace) -> int:
    """Check every flag, lock the run folder, then load the data and train."""
    started = time.perf_counter()
    folder = _run_folder(args)
    explicit = check_flags(args)
    settings = None if args.resume else _new_settings(args, explicit)
    if not args.no_plots:
        require_matplotlib("--no-plots")
    with folder.lock():
        config, settings, resume = _open_run(args, folder, settings, explicit)
        with _kernel_warmup(settings, explicit):
            data, info = _load_data(args, folder, config, settings, resume)
        solver, recorder = _solver_for(args, folder, settings, explicit, data, info)
        if resume:
            _continue_run(folder, config, settings, solver, recorder, info)
        else:
            _start_run(args, folder, settings, solver.model, info)
        code = _train(folder, solver, recorder, started)
        if code == 0 and settings.get("test_at_end"):
            _test_at_end(folder, settings, data, info, started)
        return code


# --- the steps --------------------------------------------------------------------------


def _run_folder(args: argparse.Namespace) -> RunFolder:
    """The run folder (not created yet), and --data-dir checked."""
    if args.resume and args.out is None:
        raise CLIError("--resume needs --out RUN_DIR (the run to continue)")
    out = args.out if args.out is not None else f"runs/{time.strftime('%Y%m%d-%H%M%S')}"
    if args.data_dir is not None:
        args.data_dir = str(cli_path(args.data_dir, "--data-dir"))
    if args.dataset is not None:
        args.dataset = _dataset_arg(args.dataset, args.data_dir)
    return RunFolder(cli_path(out, "--out"))


def _dataset_arg(value: str, data_dir: str | None) -> str:
    """A --dataset as recorded: a name of nndl.datasets.DATASETS, or a folder's absolute path."""
    if is_named(value):
        return value
    path = cli_path(value, "--dataset")
    if not path.is_dir():
        raise CLIError(
            f"--dataset {value}: neither a data set ({', '.join(DATASETS)}) nor a folder of "
            "images (ROOT/<class>/*.png|jpg|...)"
        )
    if data_dir is not None:
        raise CLIError("--data-dir applies to the named data sets; --dataset PATH is the folder")
    return str(path.resolve())


def _new_settings(args: argparse.Namespace, explicit: dict) -> dict[str, Any]:
    """Every setting of a new run, the model and its memory planned (sizes checked,
    nothing allocated)."""
    settings = settings_from_args(args)
    _plan(args, settings, explicit)
    return settings


def _plan(args: argparse.Namespace, settings: dict[str, Any], explicit: dict) -> None:
    """The model's keywords checked, then the memory training needs against what the
    machine has (unless --no-memory-check)."""
    input_dim, num_classes = planned_input(settings)
    kwargs = preflight(settings, explicit, input_dim, num_classes)
    if not args.no_memory_check:
        check_memory(plan_memory(settings, kwargs, input_dim), available_memory())


def _stored_settings(run: RunFolder, config: dict[str, Any], explicit: dict) -> dict[str, Any]:
    """The settings of the run being resumed, with this invocation's run-control flags;
    refuses a flag that would change the run."""
    # Settings added since nndl 0.1.0 take their defaults, which mean what it did.
    settings = {**NEW_DEFAULTS, **config["settings"]}
    check_settings(settings, lambda k: f"{run.config}: settings.{k}", REQUIRED_SETTINGS)
    fixed = {k: v for k, v in explicit.items() if k not in RUN_CONTROL}
    if "dataset" in fixed and fixed["dataset"] != settings["dataset"]:
        raise CLIError(
            f"{run.path} was trained on --dataset {settings['dataset']}, not "
            f"{fixed['dataset']}; resume it without --dataset or start a new run folder"
        )
    changed = [k for k, v in fixed.items() if k not in settings or settings[k] != v]
    if changed:
        raise CLIError(
            "cannot change " + ", ".join(map(flag_name, changed)) + " when resuming; "
            "start a new run folder instead"
        )
    settings.update({k: explicit[k] for k in RUN_CONTROL if k in explicit})
    return settings


def _open_run(args: argparse.Namespace, run: RunFolder, settings: dict | None, explicit: dict):
    """(config, settings, resume) of the run this invocation makes in the locked folder."""
    config = None
    if args.resume:
        config = run.read_config()
        settings = _stored_settings(run, config, explicit)
        _plan(args, settings, explicit)
        if not run.holds_run():
            # Stopped before its first checkpoint: nothing to lose, so start it afresh.
            print(f"{run.checkpoint} not written yet: starting the run again", file=sys.stderr)
    elif run.holds_run():
        raise CLIError(
            f"{run.path} already holds a run; pass --resume to continue it or choose another --out"
        )
    # The stopping rules belong to this invocation; a resumed run does not inherit them.
    settings.update(time_limit=args.time_limit, target_acc=args.target_acc)
    return config, settings, args.resume and run.holds_run()


def _kernel_warmup(settings: dict[str, Any], explicit: dict) -> KernelWarmup:
    """The kernels of the run's steps compiled (or read from numba's cache) in the
    background while the data loads (:mod:`nndl.train.warmup`)."""
    input_dim, num_classes = planned_input(settings)
    kwargs = preflight(settings, explicit, input_dim, num_classes)
    return KernelWarmup(settings["model"], kwargs, input_dim, settings["dtype"],
                        recompute=bool(settings.get("recompute")))  # fmt: skip


def _load_data(args, run: RunFolder, config: dict | None, settings: dict, resume: bool):
    """The data splits and their summary; a resumed run must get the data it trained on.
    A new run on a data set other than CIFAR-10 fits the split sizes it was not given to
    the data, and records them."""
    data_dir = run.data_dir(args.data_dir, config)
    fit = () if resume else _sizes_to_fit(args, settings)
    data, info = load_cifar(settings, data_dir=data_dir, progress=not args.quiet, fit=fit)
    for key in fit:
        settings[key] = info[key]
    if fit:
        check_settings(settings, flag_name)
    stored = (config or {}).get("data", {})
    if resume and stored.get("fingerprint") not in (None, info["fingerprint"]):
        raise CLIError(
            f"the training data in {info['data_dir']} differs from the data {run.path} was "
            f"trained on ({stored.get('data_dir')}); resume with that data (--data-dir) or "
            "start a new run folder"
        )
    if "decode_seconds" in info and not args.quiet:
        how = "read from the cache" if info["cached"] else "decoded"
        ignored = f"; ignored {info['ignored_files']} files that are not images" if info[
            "ignored_files"] else ""  # fmt: skip
        print(f"{info['dataset']}: {info['num_training'] + info['num_validation']} training "
              f"and {info['num_test']} test images, {info['channels']} x "
              f"{info['image_size'][0]} x {info['image_size'][1]}, {how} in "
              f"{info['decode_seconds']:.1f}s{ignored}", file=sys.stderr)  # fmt: skip
    return data, info


def _sizes_to_fit(args: argparse.Namespace, settings: dict) -> tuple[str, ...]:
    """The split sizes neither given as flags nor set by the preset (other data sets only:
    CIFAR-10's defaults stay what they were)."""
    if settings.get("dataset", "cifar10") == "cifar10":
        return ()
    preset = PRESETS[settings.get("preset", DEFAULTS["preset"])].settings
    return tuple(k for k in DATA_SIZES if getattr(args, k, None) is None and k not in preset)


def _solver_for(args, run: RunFolder, settings: dict, explicit: dict, data: dict, info: dict):
    """The model, its Solver and the RunRecorder that keeps the folder up to date."""
    kwargs = preflight(settings, explicit, info["input_dim"], len(info["class_names"]))
    if settings.get("arch") and kwargs["layers"][-1] != settings["arch"][-1] and not args.quiet:
        print(f"the spec's last linear layer has 10 units (CIFAR-10's classes); built with "
              f"{len(info['class_names'])} for {info['dataset']}", file=sys.stderr)
    model = build_model(settings["model"], **kwargs)
    if settings.get("recompute"):
        model.recompute = True  # a network model (check_combination refused the others)
    dropout_param = getattr(model, "dropout_param", None)
    if dropout_param:
        # A classic seed pins the dropout mask for gradient checks; training wants a
        # fresh mask each step, drawn from the model's seeded Generator.
        dropout_param.pop("seed", None)
    recorder = RunRecorder(
        run,
        info["class_names"],
        input_dim=info["input_dim"],
        quiet=args.quiet,
        time_limit=settings.get("time_limit"),
        target_acc=settings.get("target_acc"),
        plots=not args.no_plots,
    )
    specs = getattr(model, "param_specs", None) or MODELS[settings["model"]].param_plan(**kwargs)
    solver = Solver(model, {k: data[k] for k in DATA_KEYS}, verbose=False, callbacks=[recorder],
                    **solver_kwargs(settings, specs))  # fmt: skip
    return solver, recorder


def _start_run(args, run: RunFolder, settings: dict, model: Any, info: dict) -> None:
    """The files a new run writes before it trains."""
    run.write_preprocess(info["mean_image"], info["class_names"], settings["dtype"],
                         info.get("mean"), info.get("std"), dataset=info["dataset"])  # fmt: skip
    run.write_metrics([])
    data = {k: v for k, v in info.items() if k != "mean_image"}
    for key in ("mean", "std"):
        if key in data:
            data[key] = [float(v) for v in data[key]]
    run.write_config({
        "nndl_version": __version__,
        "command": " ".join(["nndl", *args.argv]),
        "created": _now(),
        "settings": settings,
        "model": {"name": model.name, "config": model.config},
        "data": data,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
    })  # fmt: skip


def _continue_run(run: RunFolder, config: dict, settings: dict, solver, recorder, info) -> None:
    """Load the checkpoint and metrics into ``solver`` and ``recorder``; only when both are
    accepted is the resume recorded in config.json."""
    solver.load_checkpoint(run.checkpoint)
    if solver.epoch >= settings["epochs"]:
        raise CLIError(
            f"{run.path} has already trained {solver.epoch} epochs; "
            f"pass --epochs above {solver.epoch} to continue"
        )
    recorder.resume_from(solver)
    entry = {"time": _now(), "epochs": settings["epochs"], "data_dir": info["data_dir"]}
    config.setdefault("resumed", []).append(entry)
    config["settings"] = settings
    config.setdefault("data", {}).setdefault("fingerprint", info["fingerprint"])
    run.write_config(config)


def _train(run: RunFolder, solver: Solver, recorder: RunRecorder, started: float) -> int:
    recorder.start_wall = started
    try:
        solver.train()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        # Raised between steps (see Solver.train), so what is saved now resumes exactly.
        terminated = isinstance(exc, Terminated)
        recorder.finish(solver, "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)")
        word, code = ("terminated", 143) if terminated else ("interrupted", 130)
        print(f"{word}; continue with: nndl train --out {run.path} --resume", file=sys.stderr)
        return code
    recorder.finish(solver)
    return 0


def _test_at_end(run: RunFolder, settings: dict, data: dict, info: dict, started: float) -> None:
    """The best model on the test split (already preprocessed as in training), with the
    run's test-time augmentation: printed, into evaluation.json and config.json."""
    if not len(data["y_test"]):
        raise CLIError("--test-at-end needs test images (--num-test is 0)")
    if not run.best.is_file():  # stopped (time limit) before its first epoch ended
        print(f"test at end: skipped, no epoch finished; nndl evaluate {run.path} --last")
        return
    model, extra, _ = run.load_model()
    result = {"model_file": run.best.name, "epoch": extra.get("epoch"), "split": "test"}
    result.update(evaluate_model(model, data["X_test"], data["y_test"], info["class_names"],
                                 settings["tta"]))  # fmt: skip
    run.write_json("evaluation.json", result)
    config = run.read_config()
    config["test"] = {k: result[k] for k in ("accuracy", "num_images", "tta", "model_file",
                                             "epoch", "seconds")}  # fmt: skip
    config["test"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    run.write_config(config)
    print(f"test accuracy: {result['accuracy']:.4f} ({result['num_images']} images, "
          f"tta {settings['tta']}, {result['seconds']:.1f}s)")  # fmt: skip


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
