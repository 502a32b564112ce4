"""Planned against measured memory: what ``nndl train`` plans before any data loads
(:func:`nndl.cli.memory_plan.plan_memory`, the figure it refuses a run on) next to the
peak resident memory of the same run, for each preset.

    NNDL_DATA_DIR=../shared/cifar10 python benchmarks/bench_memory.py            # 65 80 90 94
    python benchmarks/bench_memory.py --presets 65 94 --time-limit 60 --data-dir DIR

Each run trains for ``--time-limit`` seconds (training steps, then the accuracy checks
and the saves on the way out: the run's peak is reached within its first steps), then
the plan is recomputed from the run's own config.json. The plan should stay above the
peak (an upper bound: a refusal never stops a run that would fit) without being far
above it (a loose plan refuses runs that would fit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from nndl.cli.memory_plan import plan_memory

MIB = 1 << 20


def peak_of_run(preset: str, out: Path, time_limit: float, data_dir: str | None) -> int:
    """Run ``nndl train --preset PRESET`` for ``time_limit`` seconds; its peak RSS in bytes."""
    cmd = [sys.executable, "-m", "nndl", "train", "--preset", preset, "--out", str(out),
           "--time-limit", str(time_limit), "--no-plots", "--quiet"]  # fmt: skip
    if data_dir:
        cmd += ["--data-dir", data_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, not the suite's
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_memory: {' '.join(cmd)} failed")
    return usage.ru_maxrss * 1024  # KiB on Linux


def planned(out: Path) -> dict[str, int]:
    """The plan ``nndl train`` made for the run in ``out``, from its config.json."""
    config = json.loads((out / "config.json").read_text())
    model = config["model"]["config"]
    return plan_memory(config["settings"], model, tuple(model["input_dim"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["65", "80", "90", "94"])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--data-dir", default=os.environ.get("NNDL_DATA_DIR"))
    args = parser.parse_args(argv)
    print("| preset | planned MiB (runtime + parameters + activations + data) | peak RSS MiB "
          "| peak / planned |")  # fmt: skip
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            out = Path(tmp) / preset
            peak = peak_of_run(preset, out, args.time_limit, args.data_dir)
            plan = planned(out)
            parts = " + ".join(f"{plan[k] / MIB:,.0f}" for k in plan if k != "total")
            print(f"| {preset} | {plan['total'] / MIB:,.0f} ({parts}) | {peak / MIB:,.0f} "
                  f"| {peak / plan['total']:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
