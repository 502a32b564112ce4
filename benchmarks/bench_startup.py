"""What a training run does before its first step, side by side with how nndl did it
before: reading CIFAR-10, and compiling the kernels on a fresh install.

    NNDL_DATA_DIR=../shared/cifar10 python benchmarks/bench_startup.py --rounds 3

``data``: the main job's data as ``nndl train`` reads it now (``nndl.cli.inputs.load_data``:
8-bit pixels, the training set kept so, the fingerprint hashed a block at a time) against
the float32 arrays it read before (``get_CIFAR10_data`` and ``data_fingerprint`` of them).

``kernels``: from an empty numba cache (a new ``NUMBA_CACHE_DIR`` each run), the seconds
until the main job's net has every kernel of a training step: ``none`` runs one step
(the kernels compile one after another, as before), ``thread`` is
:class:`nndl.train.warmup.KernelWarmup` without its helper process, ``helper`` with it.
No data is read here, so this is the compile alone, not hidden behind the data.

Every measurement runs in a fresh process (first-call costs are the point), the ways
alternating within each round. Printed: each round, then the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

_CHILD = "_NNDL_STARTUP_CHILD"
WAYS = {"data": ("floats", "pixels"), "kernels": ("none", "thread", "helper")}


def _data(way: str) -> float:
    from nndl.cli.flags import DEFAULTS
    from nndl.cli.inputs import load_data
    from nndl.cli.presets import MAIN_JOB
    from nndl.data import data_fingerprint, get_CIFAR10_data
    from nndl.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # as nndl's command line does
    t = time.perf_counter()
    if way == "floats":
        data_fingerprint(get_CIFAR10_data(49000, 1000, 1000))
    else:
        load_data({**DEFAULTS, **MAIN_JOB}, progress=False)
    return time.perf_counter() - t


def _kernels(way: str) -> float:
    import numpy as np

    from nndl.cli.flags import DEFAULTS
    from nndl.cli.model_plan import preflight
    from nndl.models import build_model
    from nndl.train.warmup import KernelWarmup, warm_step

    kwargs = preflight(DEFAULTS, (), (3, 32, 32), 10)
    t = time.perf_counter()
    if way == "none":
        warm_step(build_model("convnet", **kwargs), (3, 32, 32), np.float32, batch=64)
    else:
        with KernelWarmup("convnet", kwargs, (3, 32, 32), "float32", helper=way == "helper"):
            pass
    return time.perf_counter() - t


def child(what: str, way: str) -> None:
    print(f"{(_data if what == 'data' else _kernels)(way):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--what", nargs="+", choices=list(WAYS), default=list(WAYS))
    args = p.parse_args()
    for what in args.what:
        times: dict[str, list[float]] = {way: [] for way in WAYS[what]}
        for r in range(args.rounds):
            for way in WAYS[what]:
                with tempfile.TemporaryDirectory() as cache:
                    env = {**os.environ, _CHILD: f"{what}:{way}"}
                    if what == "kernels":
                        env["NUMBA_CACHE_DIR"] = cache
                    done = subprocess.run([sys.executable, __file__], env=env, check=True,
                                          capture_output=True, text=True)  # fmt: skip
                seconds = float(done.stdout.split()[-1])
                times[way].append(seconds)
                print(f"round {r + 1} {what} {way:7s} {seconds:6.2f} s", flush=True)
        medians = {way: statistics.median(v) for way, v in times.items()}
        base = medians[WAYS[what][0]]
        print(what + ": " + ", ".join(f"{way} {m:.2f} s ({m / base:.2f})"
                                      for way, m in medians.items()))  # fmt: skip


if __name__ == "__main__":
    if os.environ.get(_CHILD):
        child(*os.environ[_CHILD].split(":"))
    else:
        main()
