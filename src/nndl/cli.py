"""The ``nndl`` command line: ``nndl train``, ``nndl evaluate`` and ``nndl predict``.

``nndl train`` trains a model from the registry on CIFAR-10 and writes everything about
the run into one folder (see :mod:`nndl.run_dir` for its contents); ``evaluate`` and
``predict`` read that folder back. Progress bars, plots and image loading need the
``cli`` extra: ``pip install 'nndl[cli]'``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .cli_options import (  # DEFAULTS re-exported: the default run is nndl.cli.DEFAULTS
    DEFAULTS,  # noqa: F401
    REQUIRED_SETTINGS,
    RUN_CONTROL,
    build_kwargs,
    build_parser,
    check_flags,
    check_settings,
    flag_name,
    preflight,
    settings_from_args,
)
from .models import build_model
from .run_dir import (
    CLIError,
    RunFolder,
    batched_scores,
    cli_path,
    evaluate_scores,
    evaluation_report,
    load_cifar,
    load_images,
    require_matplotlib,
    softmax,
)
from .run_recorder import RunRecorder

# Errors that mean bad input (flags, files, data): reported as `nndl CMD: error: ...`, exit 2.
# A RefusedGlobalError (a crafted pickle) is an UnpicklingError.
USER_ERRORS = (
    CLIError,
    ValueError,
    OSError,
    ImportError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _stored_settings(run: RunFolder, config: dict[str, Any], explicit: dict) -> dict[str, Any]:
    """The settings of the run being resumed, with this invocation's run-control flags;
    refuses a flag that would change the run."""
    settings = dict(config["settings"])
    check_settings(settings, lambda k: f"{run.config}: settings.{k}", REQUIRED_SETTINGS)
    fixed = {k: v for k, v in explicit.items() if k not in RUN_CONTROL}
    changed = [k for k, v in fixed.items() if settings.get(k, v) != v]
    if changed:
        raise CLIError(
            "cannot change " + ", ".join(map(flag_name, changed)) + " when resuming; "
            "start a new run folder instead"
        )
    settings.update({k: explicit[k] for k in RUN_CONTROL if k in explicit})
    return settings


def _check_same_data(run: RunFolder, config: dict[str, Any], info: dict[str, Any]) -> None:
    """Refuse to continue a run on other training data than it was trained on."""
    stored = config.get("data", {})
    if stored.get("fingerprint") not in (None, info["fingerprint"]):
        raise CLIError(
            f"the training data in {info['data_dir']} differs from the data {run.path} was "
            f"trained on ({stored.get('data_dir')}); resume with that data (--data-dir) or "
            "start a new run folder"
        )


def _new_config(args: argparse.Namespace, settings: dict, model: Any, info: dict) -> dict:
    return {
        "nndl_version": __version__,
        "command": " ".join(["nndl", *args.argv]),
        "created": _now(),
        "settings": settings,
        "model": {"name": model.name, "config": model.config},
        "data": {k: v for k, v in info.items() if k != "mean_image"},
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
    }


def cmd_train(args: argparse.Namespace) -> int:
    """Check every flag, lock the run folder, then load the data and train.

    The order matters: bad flags are reported before the run folder is touched, a bad
    --out before the data loads, and nothing in the folder changes until the run is
    known to start (a refused resume leaves config.json as it was).
    """
    t_start = time.perf_counter()
    if args.resume and args.out is None:
        raise CLIError("--resume needs --out RUN_DIR (the run to continue)")
    out = Path("runs") / time.strftime("%Y%m%d-%H%M%S") if args.out is None else args.out
    run = RunFolder(cli_path(out, "--out"))
    if args.data_dir is not None:
        args.data_dir = str(cli_path(args.data_dir, "--data-dir"))
    explicit = check_flags(args)
    settings = None if args.resume else settings_from_args(args)
    if settings is not None:
        preflight(settings, explicit)
    if not args.no_plots:
        require_matplotlib("--no-plots")
    with run.lock():
        return _train_locked(args, run, settings, explicit, t_start)


def _train_locked(
    args: argparse.Namespace, run: RunFolder, settings: dict | None, explicit: dict, t_start
) -> int:
    config, settings, resume = _open_run(args, run, settings, explicit)
    data_dir = run.data_dir(args.data_dir, config)
    data, info = load_cifar(settings, data_dir=data_dir, progress=not args.quiet)
    if resume:
        _check_same_data(run, config, info)
    solver, recorder = _solver_for(args, run, settings, explicit, data, info)
    if resume:
        _continue_run(run, config, settings, solver, recorder, info)
    else:
        run.write_preprocess(info["mean_image"], info["class_names"], settings["dtype"])
        run.write_metrics([])
        run.write_config(_new_config(args, settings, solver.model, info))
    recorder.start_wall = t_start
    try:
        solver.train()
    except KeyboardInterrupt:
        # Raised between steps (see Solver.train), so what is saved now resumes exactly.
        recorder.finish(solver, interrupted=True)
        print(f"interrupted; continue with: nndl train --out {run.path} --resume", file=sys.stderr)
        return 130
    recorder.finish(solver)
    return 0


def _open_run(args: argparse.Namespace, run: RunFolder, settings: dict | None, explicit: dict):
    """(config, settings, resume) of the run this invocation makes in the locked folder."""
    config = None
    if args.resume:
        config = run.read_config()
        settings = _stored_settings(run, config, explicit)
        preflight(settings, explicit)
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


def _solver_for(args, run: RunFolder, settings: dict, explicit: dict, data: dict, info: dict):
    """The model, its Solver and the RunRecorder that keeps the folder up to date."""
    from .solver import Solver

    kwargs = build_kwargs(settings, info["input_dim"], len(info["class_names"]), explicit)
    model = build_model(settings["model"], **kwargs)
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
    return solver, recorder


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


# --- evaluate and predict ------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    config = run.read_config()
    settings = config["settings"]
    needed = ("num_training", "num_validation", "num_test", "dtype")
    check_settings(settings, lambda k: f"{run.config}: settings.{k}", needed)
    model, extra, pre = run.load_model(last=args.last)
    if args.plot:
        require_matplotlib()
    if args.data_dir is not None:
        args.data_dir = str(cli_path(args.data_dir, "--data-dir"))
    data_dir = run.data_dir(args.data_dir, config)
    data, _ = load_cifar(settings, data_dir=data_dir, subtract_mean=False, progress=False)
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
    run = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
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

    Bad input of any kind (flags, a missing, corrupt or crafted file, an unreadable image,
    too little memory) prints ``nndl COMMAND: error: ...`` on stderr and returns 2, as
    argparse does; Ctrl-C returns 130. No input makes it print a traceback: anything else
    is reported as an internal error (exit 1; ``NNDL_DEBUG=1`` shows the traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:  # its own parser: the nndl train flags after '--' pass through
        from .tune import main as tune_main

        return tune_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    args.argv = argv
    prefix = f"{parser.prog} {args.command}"
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")  # the interpreter's final flush must not fail
        return 141
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(
            f"{prefix}: error: out of memory{detail}; try a smaller --batch-size or model",
            file=sys.stderr,
        )
        return 2
    except USER_ERRORS as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line instead of a traceback
        if os.environ.get("NNDL_DEBUG"):
            raise
        print(
            f"{prefix}: internal error: {type(exc).__name__}: {exc} (a bug in nndl; "
            "NNDL_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
