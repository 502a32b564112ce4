"""The cost of handing work to nndl's threads (``nndl.kernels.parallel.run``) side by side
with the way nndl did it before (one ``concurrent.futures`` future per span, the caller
waiting): the main job's training step (and how many hand-outs it makes), and one ``run``
of two spans of small work.

    NNDL_DATA_DIR=../shared/cifar10 python benchmarks/bench_dispatch.py --rounds 3

Each round times the main job's step (``nndl train``'s defaults on ``--num-training``
images, one epoch, median over the steps after the first 20) once with each dispatch, in
separate processes, alternating, so load from elsewhere hits both alike. Printed: every
round's medians, the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

_CHILD = "_NNDL_DISPATCH_CHILD"


def _futures_run():
    """parallel.run as before: one future per span on a ThreadPoolExecutor."""
    from concurrent.futures import ThreadPoolExecutor

    from nndl.kernels import parallel

    pool = ThreadPoolExecutor(parallel.get_num_threads(), thread_name_prefix="nndl_before")

    def call(fn, span):
        parallel._inside.active = True
        try:
            fn(*span)
        finally:
            parallel._inside.active = False

    def run(fn, spans):
        if parallel.get_num_threads() == 1 or len(spans) <= 1 or getattr(
            parallel._inside, "active", False
        ):
            for span in spans:
                fn(*span)
            return
        futures = [pool.submit(call, fn, span) for span in spans]
        for f in futures:
            f.result()

    return run


def child(which: str, num_training: int) -> None:
    """One process: the step's median and a two-span run's median, as one line."""
    import numpy as np

    from nndl.kernels import parallel

    dispatch = _futures_run() if which == "futures" else parallel.run
    handouts = [0]

    def counted(fn, spans):
        handouts[0] += 1
        dispatch(fn, spans)

    parallel.run = counted
    import nndl.train.solver as solver_module
    from nndl.cli.entry import main

    times: list[float] = []
    step = solver_module.Solver._step

    counts: list[int] = []

    def timed(self, X, y):
        before, t = handouts[0], time.perf_counter()
        out = step(self, X, y)
        times.append(time.perf_counter() - t)
        counts.append(handouts[0] - before)
        return out

    solver_module.Solver._step = timed
    with tempfile.TemporaryDirectory() as out:
        main(["train", "--out", os.path.join(out, "run"), "--quiet", "--no-plots",
              "--epochs", "1", "--num-training", str(num_training)])  # fmt: skip
    a = np.random.default_rng(0).random((2, 40000), dtype=np.float32)

    def work(i0, i1):
        for i in range(i0, i1):
            np.multiply(a[i], 1.0001, out=a[i])

    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(500):
            dispatch(work, [(0, 1), (1, 2)])
        runs.append((time.perf_counter() - t) / 500)
    print(f"{statistics.median(times[20:]) * 1e3:.3f} {statistics.median(runs) * 1e6:.1f} "
          f"{statistics.median(counts[20:]):.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num-training", type=int, default=12800)
    args = p.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"futures": [], "now": []}
    for r in range(args.rounds):
        for which in ("futures", "now"):
            env = {**os.environ, _CHILD: which}
            done = subprocess.run([sys.executable, __file__, "--num-training",
                                   str(args.num_training)], env=env, capture_output=True,
                                  text=True, check=True)  # fmt: skip
            step_ms, run_us, per_step = map(float, done.stdout.split()[-3:])
            results[which].append((step_ms, run_us))
            print(f"round {r + 1} {which:8s} step {step_ms:6.2f} ms  two-span run {run_us:6.1f} us"
                  f"  hand-outs a step {per_step:.0f}", flush=True)  # fmt: skip
    med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in results.items()}
    for k, (s, u) in med.items():
        print(f"median {k:8s} step {s:6.2f} ms  two-span run {u:6.1f} us")
    print(f"now / futures: step {med['now'][0] / med['futures'][0]:.3f}, "
          f"two-span run {med['now'][1] / med['futures'][1]:.3f}")  # fmt: skip


if __name__ == "__main__":
    if os.environ.get(_CHILD):
        argv = sys.argv[1:]
        child(os.environ[_CHILD], int(argv[argv.index("--num-training") + 1]))
    else:
        main()
