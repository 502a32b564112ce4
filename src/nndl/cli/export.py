"""``nndl export RUN_DIR --format onnx --output MODEL.onnx``: a run's model for other
runtimes (:func:`nndl.export.to_onnx`: raw pixels in, class probabilities out, the run's
preprocessing inside the graph). Needs the ``onnx`` extra."""

from __future__ import annotations

import argparse
from typing import Any

from ..export import DEFAULT_OPSET, MIN_OPSET, to_onnx
from ..io.atomic import check_target
from .errors import CLIError, cli_path
from .run_folder import ALLOW_NONFINITE_HELP, RunFolder

__all__ = ["add_parser", "run", "FORMATS"]

FORMATS = ("onnx",)


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="write a run's model as an ONNX graph",
        description="Write the best model of RUN_DIR, with its preprocessing, as an ONNX graph "
        "(input 'images': float32 raw pixels 0-255, (N, C, H, W) of the run's data set, "
        "(N, 3, 32, 32) for CIFAR-10; output 'probabilities'). "
        "Needs the onnx extra: pip install 'nndl[onnx]'.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'nndl train'")
    e.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default: onnx)")
    e.add_argument("--output", metavar="FILE", required=True, help="the file to write")
    e.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} or later (default: {DEFAULT_OPSET})",
    )
    e.add_argument("--last", action="store_true", help="last_model.npz instead of best_model.npz")
    e.add_argument("--allow-nonfinite", action="store_true", help=ALLOW_NONFINITE_HELP)


def run(args: argparse.Namespace) -> int:
    if args.opset < MIN_OPSET:
        raise CLIError(f"--opset must be {MIN_OPSET} or later, got {args.opset}")
    folder = RunFolder(cli_path(args.run_dir, "RUN_DIR"))
    output = cli_path(args.output, "--output")
    if output.is_dir():
        raise CLIError(f"--output {output} is a folder; expected a file name such as model.onnx")
    folder.refuse_own_file(output, "--output")
    check_target(output)  # a device, FIFO or socket is refused before the model is read
    try:
        import onnx  # noqa: F401 - checked before the model is read
    except ImportError:
        raise CLIError("--format onnx needs the onnx package: pip install 'nndl[onnx]'") from None
    model, extra, pre = folder.load_model(args.last, args.allow_nonfinite)
    preprocess = {"mean_image": pre["mean_image"], "class_names": pre["class_names"]}
    if pre["mean"] is not None:
        preprocess.update(mean=pre["mean"], std=pre["std"])
    to_onnx(model, preprocess, output, opset=args.opset)
    which = folder.last.name if args.last else folder.best.name
    print(
        f"wrote {output}: {model.name} from {folder.path / which} (epoch {extra.get('epoch')}), "
        f"ONNX opset {args.opset}"
    )
    return 0
