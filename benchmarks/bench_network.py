"""Step time of the default ConvNet, hand-wired (nndl.cnn.ConvNet) versus built from a spec
(nndl.network.Network with fused conv-BN-ReLU-pool blocks).

Both models get the same parameters; each repetition times one training step
(``loss(X, y)``: forward, backward, gradients) of each, back to back and alternating
which goes first, so load from other processes hits both alike. Prints the medians and
the median of the per-repetition ratios (spec / hand-wired; 1.00 = the same speed).

    python benchmarks/bench_network.py                   # batch 64, 30 repetitions
    python benchmarks/bench_network.py --batch 128 --reps 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nndl.cnn import ConvNet
from nndl.network import Network

SPEC = [
    {"type": "conv_bn_relu_pool", "filters": 16},
    {"type": "conv_bn_relu_pool", "filters": 32},
    {"type": "conv_bn_relu_pool", "filters": 64},
    {"type": "linear", "units": 10, "init": "lecun_normal"},
]


def _step_time(model, X, y) -> float:
    t = time.perf_counter()
    model.loss(X, y)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    ref = ConvNet(num_filters=(16, 32, 64), seed=0)
    net = Network(SPEC, seed=0)  # same seed, same draws: the same parameters
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(10, size=args.batch)
    for model in (ref, net):  # warm-up: scratch buffers, caches
        model.loss(X, y)
    t_ref, t_net, ratios = [], [], []
    for rep in range(args.reps):
        pair = (ref, net) if rep % 2 == 0 else (net, ref)
        times = {id(m): _step_time(m, X, y) for m in pair}
        t_ref.append(times[id(ref)])
        t_net.append(times[id(net)])
        ratios.append(times[id(net)] / times[id(ref)])
    print(f"batch {args.batch}, {args.reps} repetitions, float32")
    print(f"ConvNet (hand-wired): {1e3 * statistics.median(t_ref):.1f} ms per step")
    print(f"Network (spec):       {1e3 * statistics.median(t_net):.1f} ms per step")
    ratio = statistics.median(ratios)
    print(f"ratio spec / hand-wired (median of per-repetition ratios): {ratio:.3f}")


if __name__ == "__main__":
    main()
