"""``nndl summary RUN_DIR`` or ``nndl summary --arch FILE.json``: a model layer by layer.

Per layer the output shape, the parameter count and the forward FLOPs per example; then
the totals, the bytes of the parameters and of the activations for ``--batch-size``
images. Any model of a run folder works (hand-written ones through their layer tree,
:mod:`nndl.export.trees`); a spec is only planned, nothing is allocated.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..export.trees import layer_tree
from ..nn import build, format_summary, summarize
from .errors import CLIError, cli_path
from .flags import DEFAULTS
from .inputs import read_arch
from .run_folder import ALLOW_NONFINITE_HELP, RunFolder

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "summary",
        help="a model layer by layer: shapes, parameters, FLOPs, memory",
        description="Print a model layer by layer (output shape, parameters, forward FLOPs "
        "per example) with totals and the bytes of parameters and activations: the best "
        "model of RUN_DIR, or the architecture spec of --arch FILE.json.",
    )
    s.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="run folder of 'nndl train'")
    s.add_argument(
        "--arch",
        metavar="FILE.json",
        type=read_arch,
        help="an architecture spec (as for 'nndl train --arch') instead of RUN_DIR",
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS["batch_size"],
        metavar="N",
        help="batch the activation bytes are counted for (default: "
        f"{DEFAULTS['batch_size']}, the training default)",
    )
    s.add_argument(
        "--input-dim",
        type=int,
        nargs=3,
        default=[3, 32, 32],
        metavar=("C", "H", "W"),
        help="with --arch: the input per example (default: 3 32 32)",
    )
    s.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="with --arch: the parameters' type (default: float32)",
    )
    s.add_argument("--last", action="store_true", help="last_model.npz instead of best_model.npz")
    s.add_argument("--allow-nonfinite", action="store_true", help=ALLOW_NONFINITE_HELP)


def run(args: argparse.Namespace) -> int:
    if (args.run_dir is None) == (args.arch is None):
        raise CLIError("give either RUN_DIR or --arch FILE.json")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if args.run_dir is not None:
        if args.dtype is not None or args.input_dim != [3, 32, 32]:
            raise CLIError("--dtype and --input-dim apply to --arch only (a run knows its own)")
        title, root, dtype = _from_run(args)
    else:
        title, root, dtype = _from_spec(args)
    print(title)
    print(format_summary(summarize(root, dtype, args.batch_size)))
    return 0


def _from_run(args: argparse.Namespace):
    folder = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    model, extra, _ = folder.load_model(args.last, args.allow_nonfinite)
    which = folder.last.name if args.last else folder.best.name
    title = f"{model.name} from {folder.path / which} (epoch {extra.get('epoch')})"
    return title, layer_tree(model).root, model.dtype


def _from_spec(args: argparse.Namespace):
    if any(d < 1 for d in args.input_dim):
        raise CLIError(f"--input-dim must be three sizes >= 1, got {args.input_dim}")
    try:
        root = build(args.arch)
        out = root.bind(tuple(args.input_dim))
    except ValueError as exc:
        raise CLIError(f"--arch: {exc}") from None
    return f"spec: input {tuple(args.input_dim)} -> {out}", root, np.dtype(args.dtype or "float32")
