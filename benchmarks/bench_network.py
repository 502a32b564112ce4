"""Step time of today's ConvNet (a Network built from a spec, fused conv-BN-ReLU-pool
blocks) against the hand-wired ConvNet of nndl 0.1.0 (benchmarks/hand_wired_convnet.py).

Both models get the same parameters (same seed, same draws). Each repetition times one
training step (``loss(X, y)``: forward, backward, gradients) of each, back to back,
alternating which goes first, so load from other processes hits both alike. Prints the
load average before and after, the medians and the median of the per-repetition ratios
(Network / hand-wired; 1.00 = the same speed), of wall time and of this process's CPU time
(which other processes on a busy machine disturb less).

    python benchmarks/bench_network.py                    # the default net, batch 64
    python benchmarks/bench_network.py --no-batchnorm --hidden-dims 100 --reps 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from hand_wired_convnet import HandWiredConvNet

from nndl.cnn import ConvNet


def _step_time(model, X, y) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one training step."""
    t, c = time.perf_counter(), time.process_time()
    model.loss(X, y)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--num-filters", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--hidden-dims", type=int, nargs="*", default=[])
    parser.add_argument("--no-batchnorm", action="store_true")
    args = parser.parse_args()
    kw = dict(num_filters=args.num_filters, hidden_dims=args.hidden_dims,
              use_batchnorm=not args.no_batchnorm, seed=0)  # fmt: skip
    ref, net = HandWiredConvNet(**kw), ConvNet(**kw)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(10, size=args.batch)
    assert ref.loss(X, y)[0] == net.loss(X, y)[0]  # the same computation (and a warm-up)
    load_before = os.getloadavg()
    times: dict[str, list] = {"ref": [], "net": []}
    for rep in range(args.reps):
        pair = [("ref", ref), ("net", net)][:: 1 if rep % 2 == 0 else -1]
        for key, model in pair:
            times[key].append(_step_time(model, X, y))
    load_after = os.getloadavg()
    print(f"{kw}, batch {args.batch}, {args.reps} paired repetitions, float32")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs)")  # fmt: skip
    for i, what in enumerate(("wall", "CPU")):
        ref_t = [t[i] for t in times["ref"]]
        net_t = [t[i] for t in times["net"]]
        ratios = [b / a for a, b in zip(ref_t, net_t, strict=True)]
        q = statistics.quantiles(ratios, n=4)
        ms_ref, ms_net = 1e3 * statistics.median(ref_t), 1e3 * statistics.median(net_t)
        print(f"{what:>4} ms per step: hand-wired {ms_ref:.1f}, Network {ms_net:.1f}; ratio "
              f"Network / hand-wired: median {statistics.median(ratios):.3f} "
              f"(quartiles {q[0]:.3f}, {q[2]:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
