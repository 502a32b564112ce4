"""Time from ``nndl train`` to a target validation accuracy, and the run's peak memory.

Runs the real command line in a subprocess (so data loading, start-up, evaluation and
plots all count), watches the run folder's ``metrics.jsonl`` and records the wall time at
which the first epoch line with ``val_acc >= --target`` appears. Peak memory is the
child's maximum resident set size. Everything after ``--`` is passed to ``nndl train``::

    python benchmarks/bench_train.py --runs 3                       # the default model
    python benchmarks/bench_train.py -- --model three_layer_convnet --num-filters 64 \\
        --filter-size 3 --hidden-dim 500 --reg 0.005 --weight-scale 0.001 --lr 1e-3 \\
        --lr-decay 0.99 --batch-size 50 --epochs 15     # SPEC's reference configuration

Needs the data set: ``--data-dir`` (or ``NNDL_DATA_DIR``) as for ``nndl train``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_once(train_args: list[str], target: float, out: Path) -> dict:
    cmd = [sys.executable, "-m", "nndl", "train", "--out", str(out), "--quiet", *train_args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    reached_at = None
    seen = 0
    while True:
        # wait4 (not Popen.poll) so the child's resource usage is ours to read.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        finished = pid != 0
        records = _read_metrics(metrics)
        for rec in records[seen:]:
            if reached_at is None and rec["val_acc"] >= target:
                reached_at = time.perf_counter() - started
        seen = len(records)
        if finished:
            break
        time.sleep(0.25)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_train: nndl train failed with exit code {proc.returncode}")
    records = _read_metrics(metrics)
    return {
        "reached_s": reached_at,
        "wall_s": wall,
        "epochs": len(records),
        "best_val": max((r["val_acc"] for r in records), default=float("nan")),
        "final_val": records[-1]["val_acc"] if records else float("nan"),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "val_by_epoch": [round(r["val_acc"], 3) for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1, help="repetitions (median reported)")
    p.add_argument("--target", type=float, default=0.65, help="validation accuracy to reach")
    p.add_argument("--keep", metavar="DIR", help="keep the run folders under DIR")
    args = p.parse_args(argv)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nndl-bench-"))
    results = []
    for i in range(args.runs):
        res = run_once(train_args, args.target, root / f"run{i}")
        results.append(res)
        print(json.dumps(res))
    reached = [r["reached_s"] for r in results if r["reached_s"] is not None]
    print(f"\ncommand: nndl train {' '.join(train_args)}")
    print(f"runs: {len(results)}; reached {args.target:.2f} in {len(reached)} of them")
    if reached:
        print(f"median time to {args.target:.2f} val acc: {statistics.median(reached):.1f} s")
    print(f"median wall time: {statistics.median(r['wall_s'] for r in results):.1f} s")
    print(f"median best val acc: {statistics.median(r['best_val'] for r in results):.3f}")
    print(f"max peak RSS: {max(r['peak_rss_mb'] for r in results):.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
