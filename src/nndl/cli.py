"""The ``nndl`` command line: ``nndl train``, ``nndl evaluate`` and ``nndl predict``.

``nndl train`` trains a model from the registry on CIFAR-10 and writes everything about
the run into one folder (see :mod:`nndl.run_dir` for its contents); ``evaluate`` and
``predict`` read that folder back. Progress bars, plots and image loading need the
``cli`` extra: ``pip install 'nndl[cli]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .cli_options import (  # DEFAULTS re-exported: the default run is nndl.cli.DEFAULTS
    DEFAULTS,  # noqa: F401
    RUN_CONTROL,
    build_kwargs,
    build_parser,
    explicit_flags,
    flag_name,
    settings_from_args,
)
from .models import build_model
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
    explicit = explicit_flags(args)
    if args.resume:
        config = run.read_config(need_checkpoint=True)
        settings = config["settings"]
        fixed = {k: v for k, v in explicit.items() if k not in RUN_CONTROL}
        changed = [k for k, v in fixed.items() if settings.get(k, v) != v]
        if changed:
            raise CLIError(
                "cannot change " + ", ".join(map(flag_name, changed)) + " when resuming; "
                "start a new run folder instead"
            )
        settings.update({k: explicit[k] for k in RUN_CONTROL if k in explicit})
    else:
        if run.holds_run():
            raise CLIError(
                f"{run.path} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        settings = settings_from_args(args)
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
