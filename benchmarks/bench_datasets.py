"""CIFAR-10 as an image folder of PNGs against the built-in loader: the same accuracy?

Writes nothing into the repository. Needs the official CIFAR-10 (``--data-dir``) and the
PNG folder that ``tools/cifar10_to_folder.py`` writes from it::

    python tools/cifar10_to_folder.py ../shared/cifar10 runs/cifar10-png
    python benchmarks/bench_datasets.py --data-dir ../shared/cifar10 --folder runs/cifar10-png

Each step runs in its own process (its peak resident memory is that process's):

1. loading the folder with an empty cache (decoding every PNG, then writing the cache),
2. loading it again (from the cache),
3. loading CIFAR-10 from its python batches,
4. ``nndl train`` (the default 65 preset, ``--seed 0``) with ``--dataset cifar10`` and
   with ``--dataset FOLDER``, both on all 50,000 training images (``--num-validation 0``)
   and tested on all 10,000 test images (``--test-at-end``), so that the two runs see
   the same images and differ only in their order.

Prints a table and writes ``--json`` (default: results in the work folder). Any flag
after ``--`` goes to both ``nndl train`` runs (``-- --epochs 1`` for a shorter check).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_LOAD = """
import json, sys, time
from nndl.datasets import load_dataset_info
started = time.perf_counter()
data, info = load_dataset_info(sys.argv[1], sys.argv[2] if sys.argv[2] != "-" else None,
                               num_validation=0, num_test=10000)
info["seconds"] = time.perf_counter() - started
info["num_training"] = len(data["X_train"])
print(json.dumps(info))
"""
SPLITS = ["--num-training", "50000", "--num-validation", "0", "--num-test", "10000"]


def _child(cmd: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak resident MiB) of a child process; fails loudly."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"bench_datasets: {' '.join(cmd[:6])} ... exited {proc.returncode}")
    return out, time.perf_counter() - started, usage.ru_maxrss / 1024  # kB on Linux


def load_step(name: str, root: str | None, env: dict[str, str]) -> dict:
    out, wall, peak = _child([sys.executable, "-c", _LOAD, name, root or "-"], env)
    info = json.loads(out.strip().splitlines()[-1])
    return {"seconds": round(info["seconds"], 2), "decode_seconds": info.get("decode_seconds"),
            "cached": info.get("cached"), "peak_mib": round(peak),
            "images": info["num_training"]}  # fmt: skip


def train_step(dataset_args: list[str], run: Path, extra: list[str], env) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "nndl",
        "train",
        "--preset",
        "65",
        "--seed",
        "0",
        *SPLITS,
        "--test-at-end",
        "--no-plots",
        "--quiet",
        "--out",
        str(run),
        *dataset_args,
        *extra,
    ]
    _, wall, peak = _child(cmd, env)  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    return {"test_accuracy": config["test"]["accuracy"], "wall_seconds": round(wall, 1),
            "peak_mib": round(peak)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="the folder holding cifar-10-batches-py")
    ap.add_argument("--folder", required=True, help="CIFAR-10 as PNGs (tools/cifar10_to_folder.py)")
    ap.add_argument("--work", help="where the cache and runs go (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--skip-train", action="store_true", help="only the loading steps")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_datasets-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}  # an empty cache to start
    results = {
        "folder_decode": load_step(args.folder, None, env),
        "folder_cached": load_step(args.folder, None, env),
        "cifar10_batches": load_step("cifar10", args.data_dir, env),
        "train_args": ["--preset", "65", "--seed", "0", *SPLITS, "--test-at-end", *extra],
    }
    if not args.skip_train:
        results["train_cifar10"] = train_step(
            ["--dataset", "cifar10", "--data-dir", args.data_dir], work / "run-cifar10", extra, env
        )
        results["train_folder"] = train_step(["--dataset", args.folder], work / "run-folder",
                                             extra, env)  # fmt: skip
    for key, value in results.items():
        print(f"{key:16s} {value}")
    path = Path(args.json) if args.json else work / "bench_datasets.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
