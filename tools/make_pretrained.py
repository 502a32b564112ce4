"""Package a run's best model as the pretrained model shipped with nndl.

    nndl train --preset 65 --seed 0 --data-dir ../shared/cifar10 --out runs/pretrained
    nndl evaluate runs/pretrained --num-test 10000
    python tools/make_pretrained.py runs/pretrained

writes ``src/nndl/models/weights/default.npz``: the run's best model (its parameters and
running statistics, float32) with, in the file's extra, the run's preprocessing, the
accuracy that ``nndl evaluate`` wrote to evaluation.json (it must be on all 10,000
test images) and the commands above. ``nndl.models.pretrained()`` and
``nndl predict --pretrained`` load it. Refuses a file over 1 MB (the package carries it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nndl.cli.run_folder import RunFolder
from nndl.io.checkpoint import save_tree
from nndl.models import PRETRAINED, model_entry

MAX_BYTES = 2**20
OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "nndl" / "models" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", metavar="RUN_DIR")
    ap.add_argument("--name", default="default", choices=sorted(PRETRAINED))
    args = ap.parse_args(argv)
    folder = RunFolder(Path(args.run_dir))
    model, extra, pre = folder.load_model()
    evaluation = json.loads((folder.path / "evaluation.json").read_text())
    if evaluation.get("num_images") != 10000 or evaluation.get("split") != "test":
        sys.exit(f"make_pretrained: run 'nndl evaluate {args.run_dir} --num-test 10000' first")
    if evaluation.get("model_file") != folder.best.name:
        sys.exit("make_pretrained: evaluation.json is not of the best model")
    config = folder.read_config()
    preprocess = {
        "mean_image": np.asarray(pre["mean_image"], np.float32),
        "class_names": list(pre["class_names"]),
        "dtype": pre["dtype"],
    }
    if pre.get("mean") is not None:
        preprocess |= {"mean": pre["mean"], "std": pre["std"]}
    info = {
        "preprocess": preprocess,
        "test_accuracy": evaluation["accuracy"],
        "num_test": evaluation["num_images"],
        "tta": evaluation.get("tta", "none"),
        "epoch": extra.get("epoch"),
        "command": [
            config["command"],
            f"nndl evaluate {args.run_dir} --num-test 10000",
            f"python tools/make_pretrained.py {args.run_dir}",
        ],
    }
    path = OUT_DIR / PRETRAINED[args.name]
    save_tree(path, {"kind": "model", "model": model_entry(model), "extra": info})
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        sys.exit(f"make_pretrained: the model takes {size} bytes; the package takes <= 1 MB")
    print(f"wrote {path} ({size / 1e3:.0f} kB), test accuracy {info['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
