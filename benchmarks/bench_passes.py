"""Time and peak memory of a training pass (forward and backward) with nndl's savers side
by side: gradients nobody reads left out (``Network.skip_grads``, which the Solver sets
each step), ``--recompute`` (``Network.recompute``: the conv layers rebuild their Winograd
tiles or im2col columns in the backward pass instead of caching them), and glibc's
malloc told to keep freed memory for the next pass (``nndl.kernels.allocator``, which
``nndl``'s command line turns on; ``default`` is glibc's own setting).

    python benchmarks/bench_passes.py                     # both nets, every configuration
    python benchmarks/bench_passes.py --nets 94 --reps 2 --steps 5
    python benchmarks/bench_passes.py --nets 94 --phases late --recompute on

Nets: ``94`` (the preset's net at batch 2000, its whitening bias trainable) in three
phases of its run: ``all`` (every gradient computed, as before the Solver skipped any),
``early`` (the whitening filters skipped: epochs 1-3) and ``late`` (the whole whitening
conv skipped: after epoch 3); ``airbench94`` (batch 1024, nothing to skip). Each
configuration runs in its own process (``--steps`` passes on random data; the first one,
which allocates the scratch buffers, is not timed) so that its peak resident memory is its
own; the configurations alternate within each of ``--reps`` rounds, so load from other
processes hits them alike. Printed per configuration: the median time of a pass over all
rounds, and the peak resident memory above the resident size after building the model and
batch (activations, caches, gradients and scratch; not the parameters or the batch).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

# isort: off
import nndl  # noqa: F401 - first: it sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS

# isort: on
import numpy as np

from nndl.cli.presets import AIRBENCH94, AIRBENCH94_MUON
from nndl.kernels.allocator import keep_freed_memory
from nndl.network import Network

NETS = {"94": (AIRBENCH94_MUON, 2000), "airbench94": (AIRBENCH94, 1024)}
PHASES = {"all": set(), "early": {"whiten.W"}, "late": {"whiten.W", "whiten.b"}}
ALLOCATORS = ("default", "keep")
RECOMPUTE = {"off": (False,), "on": (True,), "both": (False, True)}


def configurations(nets, phases=tuple(PHASES), recompute="both", allocators=ALLOCATORS):
    """(net, phase, recompute, allocator) for each configuration measured."""
    out = []
    for net in nets:
        net_phases = [p for p in PHASES if p in phases] if net == "94" else ["all"]
        out += [(net, phase, rc, alloc) for phase in net_phases for rc in RECOMPUTE[recompute]
                for alloc in allocators]  # fmt: skip
    return out


def child(net: str, phase: str, recompute: bool, allocator: str, steps: int) -> dict:
    """Run ``steps`` training passes of one configuration in this process."""
    if allocator == "keep" and not keep_freed_memory():
        raise SystemExit("bench_passes: keep_freed_memory needs glibc")
    settings, batch = NETS[net]
    model = Network(settings["arch"], seed=0, label_smoothing=settings["label_smoothing"])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(10, size=batch)
    model.init_from_data(X)
    model.recompute = recompute
    model.skip_grads(PHASES[phase])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.loss(X, y)
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"times": times[1:], "peak_mib": (peak - base) / 1024}  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--reps", type=int, default=1, help="rounds over the configurations")
    p.add_argument("--steps", type=int, default=4, help="passes per process (first untimed)")
    p.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES),
                   help="the 94 net's phases to measure")  # fmt: skip
    p.add_argument("--recompute", choices=list(RECOMPUTE), default="both")
    p.add_argument("--allocators", nargs="+", choices=ALLOCATORS, default=list(ALLOCATORS))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        net, phase, rc, alloc = args.child
        print(json.dumps(child(net, phase, rc == "1", alloc, args.steps)))
        return 0
    configs = configurations(args.nets, args.phases, args.recompute, args.allocators)
    results: dict[tuple, dict[str, list[float]]] = {c: {"times": [], "peak": []} for c in configs}
    for _ in range(args.reps):
        for net, phase, rc, alloc in configs:
            cmd = [sys.executable, __file__, "--steps", str(args.steps),
                   "--child", net, phase, "1" if rc else "0", alloc]  # fmt: skip
            got = json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout)
            results[(net, phase, rc, alloc)]["times"] += got["times"]
            results[(net, phase, rc, alloc)]["peak"].append(got["peak_mib"])
    print(f"{'net':12} {'phase':6} {'recompute':9} {'allocator':9} {'pass (s)':>9} "
          f"{'peak (MiB)':>11}")  # fmt: skip
    for (net, phase, rc, alloc), r in results.items():
        print(f"{net:12} {phase:6} {str(rc):9} {alloc:9} {statistics.median(r['times']):9.3f} "
              f"{max(r['peak']):11.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
