"""Time one training step (forward, backward, update) of whole networks in nndl and PyTorch.

In one run: the machine's float32 GEMM rate (NumPy, a large square product), then for
every network in :data:`NETS` the same architecture, batch, update rule and thread count
in nndl and in PyTorch 2.13 CPU, timed in paired, interleaved repetitions (the order
alternates, so load from other processes hits both sides alike). Per network it prints
ms per step (medians), model GFLOP/s (the convolutions' and affine layers' multiply-adds
of forward + backward, no dx for the first layer, over nndl's time), the fraction of the
GEMM rate, nndl / PyTorch (the median of per-repetition ratios; below 1 nndl is
faster), the peak memory of a step (a child process per side, two steps: peak
resident size above the resident size after building the model and batch, so it
counts activations, caches, gradients, optimiser state and scratch, not the
parameters), and a per-layer breakdown of nndl's step.

    python benchmarks/bench_step.py                  # every network, default threads
    python benchmarks/bench_step.py --threads 1      # the steadier comparison on a busy machine
    python benchmarks/bench_step.py --quick --nets conv64-128-256

To add a network, add an entry to NETS: a batch size, an update rule, and layers from
Conv / Pool / Affine / Residual. PyTorch is optional (``pip install -e '.[bench]'``):
without it the torch columns are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from nndl import optim, parallel
from nndl.conv_layer_utils import conv_block_backward, conv_block_forward
from nndl.fast_layers import max_pool_backward_fast, max_pool_forward_fast
from nndl.layer_utils import affine_batchnorm_relu_backward, affine_batchnorm_relu_forward
from nndl.layers import affine_backward, affine_forward, softmax_loss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_layers import _blas_call, blas_threads  # noqa: E402 - a sibling script

try:
    import torch
    from torch import nn
except ImportError:  # PyTorch is an optional peer, never a dependency.
    torch = None


# --- the network table ------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    """3x3 (``k``) 'same' conv, stride 1, then [BN] - [ReLU] - [2x2 max pool]
    (``pool_first``: conv - pool - BN - ReLU, airbench's order)."""

    filters: int
    k: int = 3
    bn: bool = True
    relu: bool = True
    pool: int = 0
    pool_first: bool = False


@dataclass(frozen=True)
class Pool:
    """Max pool, window and stride ``size`` (``size`` = the map's side: global)."""

    size: int


@dataclass(frozen=True)
class Affine:
    """Fully connected layer, optionally with batch norm and ReLU."""

    out: int
    bn: bool = False
    relu: bool = False


@dataclass(frozen=True)
class Residual:
    """``x + f(x)`` for the layers in ``body`` (shapes preserved)."""

    body: tuple


@dataclass(frozen=True)
class Net:
    description: str
    batch: int
    update: str
    layers: tuple
    lr: float = 1e-3
    input_shape: tuple = (3, 32, 32)
    classes: int = 10
    quick_batch: int | None = None


def _block(c: int, pool: int = 0) -> Conv:
    return Conv(c, pool=pool)


NETS: dict[str, Net] = {
    "spec-cnn": Net(
        "SPEC reference CNN: conv64 3x3-BN-ReLU-pool2, affine500-BN-ReLU, affine10; adam",
        batch=50,
        update="adam",
        layers=(Conv(64, pool=2), Affine(500, bn=True, relu=True), Affine(10)),
    ),
    "conv64-128-256": Net(
        "3 x (conv3x3-BN-ReLU-pool2) with 64, 128, 256 filters, affine10; sgd_momentum",
        batch=128,
        update="sgd_momentum",
        layers=(_block(64, 2), _block(128, 2), _block(256, 2), Affine(10)),
        quick_batch=64,
    ),
    "airbench94-relu": Net(
        "airbench94-shaped, ReLU standing in for GELU: conv24 stem; 3 x (conv-pool2-BN-ReLU, "
        "conv-BN-ReLU) with 64, 256, 256; global max pool; affine10; nesterov",
        batch=256,
        update="nesterov_momentum",
        layers=(
            Conv(24),
            Conv(64, pool=2, pool_first=True),
            Conv(64),
            Conv(256, pool=2, pool_first=True),
            Conv(256),
            Conv(256, pool=2, pool_first=True),
            Conv(256),
            Pool(4),
            Affine(10),
        ),
        quick_batch=64,
    ),
    "resnet9-like": Net(
        "ResNet-9-like: conv64; conv128-pool, res(2 x conv128); conv256-pool; conv512-pool, "
        "res(2 x conv512); global max pool; affine10; nesterov",
        batch=128,
        update="nesterov_momentum",
        layers=(
            Conv(64),
            Conv(128, pool=2),
            Residual((Conv(128), Conv(128))),
            Conv(256, pool=2),
            Conv(512, pool=2),
            Residual((Conv(512), Conv(512))),
            Pool(4),
            Affine(10),
        ),
        quick_batch=32,
    ),
}


def _shapes(layers, shape):
    """Yield (layer, input shape (C, H, W), output shape) through the network."""
    for layer in layers:
        C, H, W = shape
        if isinstance(layer, Conv):
            out = (layer.filters, H // (layer.pool or 1), W // (layer.pool or 1))
        elif isinstance(layer, Pool):
            out = (C, H // layer.size, W // layer.size)
        elif isinstance(layer, Affine):
            out = (layer.out, 1, 1)
        else:
            out = shape
        yield layer, shape, out
        shape = out


def model_flops(net: Net, batch: int) -> float:
    """Multiply-adds x 2 of the convs and affines: forward, dw, and dx except layer 1."""
    total = 0.0
    first = True

    def walk(layers, shape):
        nonlocal total, first
        for layer, (C, H, W), _ in _shapes(layers, shape):
            if isinstance(layer, Residual):
                walk(layer.body, (C, H, W))
                continue
            if isinstance(layer, Conv):
                fwd = 2.0 * batch * layer.filters * C * layer.k**2 * H * W
            elif isinstance(layer, Affine):
                fwd = 2.0 * batch * C * H * W * layer.out
            else:
                continue
            total += fwd * (2 if first else 3)
            first = False

    walk(net.layers, net.input_shape)
    return total


# --- nndl side ----------------------------------------------------------------------------


class _NndlNet:
    """The network on nndl's functional layers; times each layer when asked."""

    def __init__(self, net: Net, batch: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.net, self.params, self.layers = net, {}, []
        self.timings: dict[str, list[float]] | None = None
        self._build(net.layers, net.input_shape, rng, first=[True])
        self.X = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        self.y = rng.integers(0, net.classes, batch)
        self.rule = optim.get_update_rule(net.update)
        self.configs = {k: {"learning_rate": net.lr, "inplace": True} for k in self.params}

    def _param(self, name, value):
        self.params[name] = value.astype(np.float32)
        return name

    def _build(self, layers, shape, rng, first, prefix=""):
        for layer, (C, H, W), _ in _shapes(layers, shape):
            name = f"{prefix}{len(self.layers)}:{type(layer).__name__.lower()}"
            if isinstance(layer, Residual):
                start = len(self.layers)
                self._build(layer.body, (C, H, W), rng, first, prefix=f"{prefix}res.")
                self.layers.append((name, "residual", start))
                continue
            entry = {"layer": layer}
            if isinstance(layer, Conv):
                F, k = layer.filters, layer.k
                entry["w"] = self._param(
                    f"{name}.w", rng.normal(0, (2 / (C * k * k)) ** 0.5, (F, C, k, k))
                )
                entry["b"] = self._param(f"{name}.b", np.zeros(F))
                if layer.bn:
                    entry["g"] = self._param(f"{name}.gamma", np.ones(F))
                    entry["be"] = self._param(f"{name}.beta", np.zeros(F))
                    entry["bn_param"] = {"mode": "train"}
                entry["cp"] = {"stride": 1, "pad": (k - 1) // 2, "input_grad": not first[0]}
                first[0] = False
            elif isinstance(layer, Affine):
                D = C * H * W
                entry["w"] = self._param(f"{name}.w", rng.normal(0, (2 / D) ** 0.5, (D, layer.out)))
                entry["b"] = self._param(f"{name}.b", np.zeros(layer.out))
                if layer.bn:
                    entry["g"] = self._param(f"{name}.gamma", np.ones(layer.out))
                    entry["be"] = self._param(f"{name}.beta", np.zeros(layer.out))
                    entry["bn_param"] = {"mode": "train"}
                first[0] = False
            self.layers.append((name, "layer", entry))

    def _forward_one(self, entry, h):
        layer, p = entry["layer"], self.params
        if isinstance(layer, Conv):
            pool = {"pool_height": layer.pool, "pool_width": layer.pool, "stride": layer.pool}
            return conv_block_forward(
                h, p[entry["w"]], p[entry["b"]], entry["cp"],
                p[entry["g"]] if layer.bn else None, p[entry["be"]] if layer.bn else None,
                entry.get("bn_param"), pool if layer.pool else None,
                "relu" if layer.relu else None, layer.pool_first,
            )  # fmt: skip
        if isinstance(layer, Pool):
            pp = {"pool_height": layer.size, "pool_width": layer.size, "stride": layer.size}
            return max_pool_forward_fast(h, pp)
        if layer.bn:
            return affine_batchnorm_relu_forward(
                h, p[entry["w"]], p[entry["b"]], p[entry["g"]], p[entry["be"]], entry["bn_param"]
            )
        return affine_forward(h, p[entry["w"]], p[entry["b"]])

    def _backward_one(self, entry, d, cache, grads):
        layer = entry["layer"]
        if isinstance(layer, Pool):
            return max_pool_backward_fast(d, cache)
        if isinstance(layer, Conv):
            dx, dw, db, dg, dbe = conv_block_backward(d, cache)
        elif layer.bn:
            dx, dw, db, dg, dbe = affine_batchnorm_relu_backward(d, cache)
        else:
            (dx, dw, db), dg, dbe = affine_backward(d, cache), None, None
        grads[entry["w"]], grads[entry["b"]] = dw, db
        if dg is not None:
            grads[entry["g"]], grads[entry["be"]] = dg, dbe
        return dx

    def _time(self, name, f, *args):
        if self.timings is None:
            return f(*args)
        t = time.perf_counter()
        r = f(*args)
        self.timings.setdefault(name, []).append(time.perf_counter() - t)
        return r

    def step(self) -> float:
        h, caches, starts = self.X, [], {}
        for i, (name, kind, entry) in enumerate(self.layers):
            if kind == "residual":
                caches.append(None)
                h = self._time(name + " fwd", np.add, h, starts[entry])
                continue
            starts[i] = h
            h, cache = self._time(name + " fwd", self._forward_one, entry, h)
            caches.append(cache)
        loss, d = softmax_loss(h, self.y)
        grads, skip = {}, {}
        for i in range(len(self.layers) - 1, -1, -1):
            name, kind, entry = self.layers[i]
            if kind == "residual":
                skip[entry] = d  # the identity path's gradient, added at the body's start
                continue
            d = self._time(name + " bwd", self._backward_one, entry, d, caches[i], grads)
            if i in skip:
                d = self._time(name + " bwd", np.add, d, skip.pop(i))
        t = time.perf_counter()
        for k, w in self.params.items():
            self.params[k], self.configs[k] = self.rule(w, grads[k], self.configs[k])
        if self.timings is not None:
            self.timings.setdefault("update", []).append(time.perf_counter() - t)
        return loss


# --- torch side ---------------------------------------------------------------------------


def _torch_layers(layers, shape):
    mods = []
    for layer, (C, H, W), _ in _shapes(layers, shape):
        if isinstance(layer, Conv):
            seq = [nn.Conv2d(C, layer.filters, layer.k, padding=(layer.k - 1) // 2)]
            tail = [nn.BatchNorm2d(layer.filters)] if layer.bn else []
            tail += [nn.ReLU()] if layer.relu else []
            pool = [nn.MaxPool2d(layer.pool)] if layer.pool else []
            mods.append(nn.Sequential(*(seq + (pool + tail if layer.pool_first else tail + pool))))
        elif isinstance(layer, Pool):
            mods.append(nn.MaxPool2d(layer.size))
        elif isinstance(layer, Affine):
            seq = [nn.Flatten(), nn.Linear(C * H * W, layer.out)]
            seq += [nn.BatchNorm1d(layer.out)] if layer.bn else []
            seq += [nn.ReLU()] if layer.relu else []
            mods.append(nn.Sequential(*seq))
        else:
            mods.append(_TorchResidual(nn.Sequential(*_torch_layers(layer.body, (C, H, W)))))
    return mods


if torch is not None:

    class _TorchResidual(nn.Module):
        def __init__(self, body) -> None:
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)


def _torch_step(net: Net, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(*_torch_layers(net.layers, net.input_shape))
    params = model.parameters()
    if net.update == "adam":
        opt = torch.optim.Adam(params, lr=net.lr)
    else:
        opt = torch.optim.SGD(
            params, lr=net.lr, momentum=0.9, nesterov=net.update == "nesterov_momentum"
        )
    X = torch.randn(batch, *net.input_shape)
    y = torch.randint(0, net.classes, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        return loss

    return step


# --- measurement ------------------------------------------------------------------------


def _set_threads(n: int | None) -> int:
    if n:
        _blas_call("set_num_threads", __import__("ctypes").c_int(n))
        parallel.set_num_threads(n)
    threads = blas_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


def gemm_gflops(n: int, reps: int) -> float:
    """Median GFLOP/s of NumPy's float32 n x n x n matrix product."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def paired(a, b, reps: int):
    """Medians of a's and b's seconds over ``reps`` interleaved pairs, and of a/b."""
    a()
    if b is not None:
        b()
    ta, tb, ratios = [], [], []
    for i in range(reps):
        order = (a, b) if i % 2 == 0 or b is None else (b, a)
        times = {}
        for f in order:
            if f is None:
                continue
            t = time.perf_counter()
            f()
            times[f] = time.perf_counter() - t
        ta.append(times[a])
        if b is not None:
            tb.append(times[b])
            ratios.append(times[a] / times[b])
    med = statistics.median
    return med(ta), (med(tb) if tb else None), (med(ratios) if ratios else None)


def _status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes.

    VmHWM (the peak resident size) belongs to the address space, which exec replaces;
    ru_maxrss would carry the parent's peak over into the child.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child_memory(name: str, side: str, batch: int, threads: int) -> None:
    """Child mode: build one side's step, run it twice, print its peak memory as JSON."""
    _set_threads(threads)
    step = _NndlNet(NETS[name], batch).step if side == "nndl" else _torch_step(NETS[name], batch)
    base = _status_bytes("VmRSS")
    step()
    step()
    peak = _status_bytes("VmHWM")
    print(json.dumps({"step_peak": peak - base, "max_rss": peak}))


def peak_memory(name: str, side: str, batch: int, threads: int) -> float | None:
    """MB of a step's peak memory above the built model (a child process), or None."""
    cmd = [sys.executable, __file__, "--child-memory", name, side, str(batch), str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode:
        print(f"(memory child for {name}/{side} failed: {done.stderr.strip()[-300:]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["step_peak"] / 2**20


def layer_table(model: _NndlNet, steps: int) -> list[str]:
    model.timings = {}
    for _ in range(steps):
        model.step()
    rows = {k: statistics.median(v) for k, v in model.timings.items()}
    model.timings = None
    total = sum(rows.values())
    names = [n for n, kind, _ in model.layers] + ["update"]
    lines = ["| layer | fwd ms | bwd ms | share |", "|---|---:|---:|---:|"]
    for n in names:
        f, b = rows.get(n + " fwd", 0.0), rows.get(n + " bwd", 0.0)
        if n == "update":
            f, b = rows.get("update", 0.0), 0.0
        lines.append(f"| {n} | {f * 1e3:.1f} | {b * 1e3:.1f} | {(f + b) / total:.0%} |")
    return lines


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS, nndl and torch threads")
    parser.add_argument("--reps", type=int, default=None, help="paired repetitions (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 reps, smaller batches")
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    parser.add_argument("--child-memory", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        name, side, batch, threads = args.child_memory
        return _child_memory(name, side, int(batch), int(threads))
    threads = _set_threads(args.threads)
    reps = args.reps or (3 if args.quick else 7)
    cpus = f"{os.cpu_count()} CPUs ({platform.machine()})"
    nt = parallel.get_num_threads()
    print(f"numpy {np.__version__}, BLAS threads {threads}, nndl threads {nt}, {cpus}")
    print("load average before the run: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("torch: " + (f"{torch.__version__}, threads {torch.get_num_threads()}" if torch else "-"))
    peak = gemm_gflops(2048, 5 if args.quick else 9)
    print(f"float32 GEMM (NumPy, 2048^3): {peak:.1f} GFLOP/s")
    print(f"median of {reps} paired repetitions after one warm-up\n")
    summary = [
        "| network | batch | nndl ms | torch ms | nndl/torch | model GFLOP/s | of GEMM peak "
        "| nndl MB | torch MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details = []
    for name in args.nets:
        net = NETS[name]
        batch = (net.quick_batch or net.batch) if args.quick else net.batch
        model = _NndlNet(net, batch)
        tstep = _torch_step(net, batch) if torch is not None else None
        a, b, r = paired(model.step, tstep, reps)
        gf = model_flops(net, batch) / a / 1e9
        mem_n = mem_t = None
        if not args.no_memory:
            mem_n = peak_memory(name, "nndl", batch, threads)
            mem_t = peak_memory(name, "torch", batch, threads) if torch is not None else None
        ratio = "-" if r is None else f"**{r:.2f}**"
        tms = "-" if b is None else f"{b * 1e3:.1f}"
        summary.append(
            f"| {name} | {batch} | {a * 1e3:.1f} | {tms} | {ratio} | {gf:.1f} | {gf / peak:.0%} "
            f"| {_mb(mem_n)} | {_mb(mem_t)} |"
        )
        details += [f"\n{name}: {net.description}; batch {batch}", *layer_table(model, reps)]
        print(summary[-1], flush=True)
    print("\n" + "\n".join(summary))
    print("\n".join(details))
    print("\nload average after the run: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
