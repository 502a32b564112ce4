"""``nndl explain RUN_DIR|--pretrained IMAGE... --method M --out DIR``: what a trained
model looks at (saliency, Grad-CAM), images that fool it, images of what it takes each
class to be, and its feature maps, as PNGs (:mod:`nndl.explain`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..data import apply_preprocess
from ..explain import (
    class_visualization,
    feature_maps,
    fooling_image,
    grad_cam,
    layer_paths,
    saliency_map,
    scores,
    spatial_layers,
)
from ..explain.pixels import class_index
from ..explain.plots import plot_feature_maps, plot_fooling, plot_images, plot_map
from .errors import CLIError, cli_path
from .inputs import load_run_images
from .predict import shipped_model
from .report import require_matplotlib, softmax
from .run_folder import ALLOW_NONFINITE_HELP, RunFolder

__all__ = ["add_parser", "run", "METHODS"]

METHODS = ("saliency", "gradcam", "fool", "classvis", "features")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        usage="nndl explain [-h] --method METHOD [--target CLASS] [--layer PATH] --out DIR "
        "[--steps N] [--seed S] [--last] [--allow-nonfinite] RUN_DIR [IMAGE ...]\n"
        "       nndl explain [-h] --pretrained --method METHOD ... --out DIR [IMAGE ...]",
        help="look inside a trained model: saliency, Grad-CAM, fooling images, ...",
        description="Explain a run's best model (or, with --pretrained, the model shipped "
        "with nndl) on image files: saliency maps, Grad-CAM maps, fooling images, class "
        "visualisations (no image needed) or feature maps, written as PNGs into --out; "
        "prints per image the predicted class (for fool: before and after).",
    )
    p.add_argument("paths", metavar="RUN_DIR IMAGE", nargs="*",
                   help="a run folder written by 'nndl train', then image files; with "
                   "--pretrained, image files only")  # fmt: skip
    p.add_argument("--pretrained", action="store_true",
                   help="use the model shipped with nndl instead of a run folder")  # fmt: skip
    p.add_argument("--method", required=True, choices=METHODS,
                   help="saliency | gradcam | fool | classvis | features")  # fmt: skip
    p.add_argument("--target", metavar="CLASS",
                   help="a class name or index: the class to explain (default: the "
                   "predicted one), to fool into (fool: required) or to visualise "
                   "(classvis: default every class)")  # fmt: skip
    p.add_argument("--layer", metavar="PATH",
                   help="a layer path as 'nndl summary' prints it (gradcam: default the "
                   "last spatial layer; features: default the first)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="fool: at most N steps (default 100); classvis: N steps (200)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="classvis: the seed (default 0)")
    p.add_argument("--last", action="store_true", help="use last_model.npz of RUN_DIR")
    p.add_argument("--allow-nonfinite", action="store_true", help=ALLOW_NONFINITE_HELP)


def run(args: argparse.Namespace) -> int:
    model, pre, images = _model_and_images(args)
    _check_flags(args, images)
    names = pre["class_names"]
    classes = int(model.config["num_classes"])
    target = None if args.target is None else class_index("--target", args.target, names, classes)
    layer = _layer(args, model)
    require_matplotlib()
    out = cli_path(args.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    if args.method == "classvis":
        _classvis(args, model, pre, target, out)
        return 0
    X = load_run_images(images, pre, "nndl explain")  # the run's channels and size
    probs = softmax(scores(model, apply_preprocess(X, pre)))
    for i, (path, stem) in enumerate(zip(images, _stems(images), strict=True)):
        x, p = X[i : i + 1], probs[i]
        k = int(p.argmax())
        y = k if target is None else target
        before = f"{names[k]} {p[k]:.4f}"
        if args.method == "fool":
            _fool(args, model, pre, x, y, out / f"{stem}_fool.png", path, before)
            continue
        if args.method == "features":
            maps = feature_maps(model, x, layer, pre)[0]
            plot_feature_maps(maps, f"{path}: {layer}", path=out / f"{stem}_features.png")
        else:
            fn = saliency_map if args.method == "saliency" else grad_cam
            extra = {"layer": layer} if args.method == "gradcam" else {}
            heat = fn(model, x, [y], preprocess=pre, **extra)[0]
            title = f"{args.method} of {names[y]} (predicted {before})"
            plot_map(x[0], heat, args.method, title, out / f"{stem}_{args.method}.png")
        print(f"{path}: predicted {before}")
    return 0


def _model_and_images(args: argparse.Namespace) -> tuple[Any, dict[str, Any], list[str]]:
    if args.pretrained:
        return (*shipped_model(args.last), list(args.paths))
    if not args.paths:
        raise CLIError("expected RUN_DIR (or --pretrained), then the images")
    folder = RunFolder(cli_path(args.paths[0], "RUN_DIR"))
    model, _, pre = folder.load_model(args.last, args.allow_nonfinite)
    return model, pre, list(args.paths[1:])


def _check_flags(args: argparse.Namespace, images: list[str]) -> None:
    if args.method == "classvis" and images:
        raise CLIError(f"--method classvis takes no IMAGE (it starts from noise), got {images}")
    if args.method != "classvis" and not images:
        raise CLIError(f"--method {args.method} needs at least one IMAGE")
    if args.method == "fool" and args.target is None:
        raise CLIError("--method fool needs --target CLASS, the class to fool the model into")
    if args.layer is not None and args.method not in ("gradcam", "features"):
        raise CLIError(f"--layer is for --method gradcam or features, not {args.method}")
    if args.steps is not None and (args.method not in ("fool", "classvis") or args.steps < 1):
        raise CLIError(f"--steps takes an int >= 1 with --method fool or classvis, got "
                       f"{args.steps} with --method {args.method}")  # fmt: skip


def _layer(args: argparse.Namespace, model: Any) -> str | None:
    """The --layer path checked (it exists and has a spatial map), or the default one."""
    if args.method not in ("gradcam", "features"):
        return None
    valid = spatial_layers(model)
    if not valid:
        raise CLIError(f"--method {args.method} needs a model with a spatial layer")
    if args.layer is None:
        top = [p for p in valid if "." not in p]
        return (top or valid)[-1 if args.method == "gradcam" else 0]
    if args.layer not in valid:
        what = "has no spatial map" if args.layer in layer_paths(model) else "does not exist"
        raise CLIError(f"--layer {args.layer!r} {what}; the layers with a spatial map are "
                       f"{', '.join(valid)}")  # fmt: skip
    return args.layer


def _stems(paths: list[str]) -> list[str]:
    """Output name stems: the image's file stem, numbered where two would collide."""
    stems = [Path(p).stem or "image" for p in paths]
    return [s if stems.count(s) == 1 else f"{s}_{i + 1}" for i, s in enumerate(stems)]


def _fool(args, model, pre, x, target, png: Path, path: str, before: str) -> None:
    names = pre["class_names"]
    r = fooling_image(model, x, target, pre, max_iter=args.steps or 100)
    p = softmax(scores(model, apply_preprocess(r.images.astype(np.float32), pre)))[0]
    k = int(p.argmax())
    plot_fooling(x[0], r.images[0], (f"original: {before}", f"fooled: {names[k]} {p[k]:.4f}"),
                 path=png)  # fmt: skip
    status = "fooled" if r.fooled[0] else "not fooled"
    print(f"{path}: before {before}, after {names[k]} {p[k]:.4f} ({status} into "
          f"{names[target]} in {r.iterations[0]} steps, largest pixel change "
          f"{r.linf[0]:.1f}/255)")  # fmt: skip


def _classvis(args, model, pre, target, out: Path) -> None:
    names = pre["class_names"]
    ks = list(range(len(names))) if target is None else [target]
    imgs = class_visualization(model, ks, pre, iterations=args.steps or 200, seed=args.seed)
    p = softmax(scores(model, apply_preprocess(imgs.astype(np.float32), pre)))
    titles = [f"{names[k]} ({p[i, k]:.2f})" for i, k in enumerate(ks)]
    png = out / ("classvis.png" if target is None else f"classvis_{names[target]}.png")
    plot_images(imgs, titles, path=png)
    for i, k in enumerate(ks):
        top = int(p[i].argmax())
        print(f"classvis {names[k]}: predicted {names[top]} {p[i, top]:.4f}")
