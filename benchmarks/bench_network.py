"""Step time of today's ConvNet (a Network built from a spec, fused conv-BN-ReLU-pool
blocks) against the hand-wired ConvNet of nndl 0.1.0 (benchmarks/hand_wired_convnet.py).

Both models get the same parameters (same seed, same draws). Each repetition times one
training step (``loss(X, y)``: forward, backward, gradients) of each, back to back,
alternating which goes first, so load from other processes hits both alike. Prints the
load average before and after, the medians and the median of the per-repetition ratios
(Network / hand-wired; 1.00 = the same speed).

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


def _step_time(model, X, y) -> float:
    t = time.perf_counter()
    model.loss(X, y)
    return time.perf_counter() - t


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
    t_ref, t_net, ratios = [], [], []
    for rep in range(args.reps):
        pair = (ref, net) if rep % 2 == 0 else (net, ref)
        times = {id(m): _step_time(m, X, y) for m in pair}
        t_ref.append(times[id(ref)])
        t_net.append(times[id(net)])
        ratios.append(times[id(net)] / times[id(ref)])
    load_after = os.getloadavg()
    print(f"{kw}, batch {args.batch}, {args.reps} paired repetitions, float32")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs)")  # fmt: skip
    print(f"hand-wired ConvNet (0.1.0): {1e3 * statistics.median(t_ref):.1f} ms per step")
    print(f"ConvNet on Network:         {1e3 * statistics.median(t_net):.1f} ms per step")
    ratio = statistics.median(ratios)
    q = statistics.quantiles(ratios, n=4)
    print(f"ratio Network / hand-wired: median {ratio:.3f} (quartiles {q[0]:.3f}, {q[2]:.3f})")


if __name__ == "__main__":
    main()
