"""Time one training step (forward, backward, update) of whole networks in nndl and PyTorch.

In one run: the machine's float32 GEMM rate (NumPy, a large square product), then for
every network in :data:`NETS` the same architecture, batch, update rule and thread count
in nndl and in PyTorch 2.13 CPU, timed in paired, interleaved repetitions (the order
alternates, so load from other processes hits both sides alike). The nndl side is what
users train: :class:`nndl.network.Network` built from the net's :mod:`nndl.nn` spec; the
PyTorch side is translated from the same bound spec (same layers, floor-mode pools,
tanh GELU, frozen parameters). Per network it prints ms per step (medians of wall time,
and of the process's CPU time, which ignores waiting for a core on a busy machine),
model GFLOP/s (the convolutions' and affine layers' multiply-adds as direct products:
forward, dx and dw; no dx for the first trainable layer, no backward for frozen layers
before it; over nndl's time), the fraction of the GEMM rate, nndl / PyTorch (the median
of per-repetition ratios; below 1 nndl is faster), the peak memory of a step (a child
process per side, two steps: peak resident size above the resident size after building
the model and batch, so it counts activations, caches, gradients, optimiser state and
scratch, not the parameters), and a per-layer breakdown of nndl's step.

    python benchmarks/bench_step.py                  # every network, default threads
    python benchmarks/bench_step.py --threads 1      # the steadier comparison on a busy machine
    python benchmarks/bench_step.py --quick --nets conv64-128-256

To add a network, add an entry to NETS: an nndl.nn spec (inline, or a JSON file in
``benchmarks/specs``), a batch size and an update rule. PyTorch is optional
(``pip install -e '.[bench]'``): without it the torch columns are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

# isort: off
import nndl  # noqa: F401 - first: it sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS

# isort: on
import numpy as np

from nndl import nn as nnm
from nndl import optim
from nndl.cli.presets import MUON_FILTERS, airbench_spec
from nndl.cnn import ConvNet
from nndl.kernels import parallel
from nndl.network import Network
from nndl.train.setup import step_loss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_layers import _blas_call, blas_threads  # noqa: E402 - a sibling script

try:
    import torch
    from torch import nn
except ImportError:  # PyTorch is an optional peer, never a dependency.
    torch = None


# --- the network table ------------------------------------------------------------------

SPECS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")


def load_spec(name: str) -> list:
    """An architecture spec from ``benchmarks/specs/<name>.json``."""
    with open(os.path.join(SPECS_DIR, f"{name}.json")) as f:
        return json.load(f)


@dataclass(frozen=True)
class Net:
    """One benchmark network: an nndl.nn architecture spec and its training settings."""

    description: str
    batch: int
    update: str
    spec: list
    lr: float = 1e-3
    momentum: float = 0.9
    label_smoothing: float = 0.0
    input_shape: tuple = (3, 32, 32)
    classes: int = 10
    quick_batch: int | None = None
    muon: bool = False  # airbench94_muon's split: Muon on the conv filters, whiten.W frozen
    recompute: bool = False  # Network.recompute, as the preset's --recompute


def _block(filters: int, pool: bool = False) -> dict:
    return {"type": "conv_bn_relu_pool" if pool else "conv_bn_relu", "filters": filters}


def _residual(filters: int) -> dict:
    return {"type": "residual", "body": [_block(filters), _block(filters)]}


def _random_init(spec: list) -> list:
    """``spec`` with data-initialised layers (patch whitening) initialised at random: a
    step takes the same time, and no training images are needed."""
    return [{k: v for k, v in layer.items() if not (k == "init" and v == "patch_whitening")}
            if isinstance(layer, dict) else layer for layer in spec]  # fmt: skip


NETS: dict[str, Net] = {
    "spec-cnn": Net(
        "SPEC reference CNN: conv64 3x3-BN-ReLU-pool2, affine500-BN-ReLU, affine10; adam",
        batch=50,
        update="adam",
        spec=[
            _block(64, True),
            {"type": "linear", "units": 500},
            "batchnorm1d",
            "relu",
            {"type": "linear", "units": 10},
        ],
    ),
    "conv64-128-256": Net(
        "3 x (conv3x3-BN-ReLU-pool2) with 64, 128, 256 filters, affine10; sgd_momentum",
        batch=128,
        update="sgd_momentum",
        spec=[
            _block(64, True),
            _block(128, True),
            _block(256, True),
            {"type": "linear", "units": 10},
        ],
        quick_batch=64,
    ),
    "airbench94": Net(
        "airbench94 (benchmarks/specs/airbench94.json): frozen 2x2 whitening conv 3->24, GELU; "
        "3 x (conv-pool2(floor)-BN-GELU, conv-BN-GELU) with 64, 256, 256, BN scale fixed, "
        "eps 1e-12; 3x3 max pool; linear 256->10 without bias, x 1/9; label smoothing 0.2; "
        "sgdw (Nesterov 0.85)",
        batch=1024,
        update="sgdw",
        spec=load_spec("airbench94"),
        momentum=0.85,
        label_smoothing=0.2,
        quick_batch=256,
    ),
    "preset-94": Net(
        "the 94 preset (airbench94_muon): the airbench94 net, head / 256, the whitening bias "
        "trained (its first 3 epochs); Muon (3 Newton-Schulz steps) on the six conv filter "
        "banks, sgdw (Nesterov 0.85) on the biases and the head; label smoothing 0.2; "
        "--recompute",
        batch=2000,
        update="sgdw",
        spec=_random_init(airbench_spec(head_scale=1 / 256, whiten_trainable=True)),
        momentum=0.85,
        label_smoothing=0.2,
        quick_batch=500,
        muon=True,
        recompute=True,
    ),
    "preset-65": Net(
        "the 65 preset (plain 'nndl train'): ConvNet 3 x (conv3x3-BN-ReLU-pool2) with 16, 32, "
        "64 filters, affine10; adam",
        batch=64,
        update="adam",
        spec=ConvNet.layers(num_filters=(16, 32, 64)),
    ),
    "preset-80": Net(
        "the 80 preset: airbench94's net with widths 64, 128, 128; sgdw (Nesterov 0.85); "
        "the 90 and 94 presets train the airbench94 net above",
        batch=1024,
        update="sgdw",
        spec=_random_init(airbench_spec((64, 128, 128))),
        momentum=0.85,
        label_smoothing=0.2,
        quick_batch=256,
    ),
    "resnet9-like": Net(
        "ResNet-9-like: conv64; conv128-pool, res(2 x conv128); conv256-pool; conv512-pool, "
        "res(2 x conv512); 4x4 max pool; affine10; nesterov",
        batch=128,
        update="nesterov_momentum",
        spec=[
            _block(64),
            _block(128, True),
            _residual(128),
            _block(256, True),
            _block(512, True),
            _residual(512),
            {"type": "maxpool2d", "pool_size": 4},
            {"type": "linear", "units": 10},
        ],
        quick_batch=32,
    ),
}


def _network(net: Net, seed: int = 0) -> Network:
    return Network(net.spec, input_dim=net.input_shape, num_classes=net.classes,
                   label_smoothing=net.label_smoothing, seed=seed)  # fmt: skip


def model_flops(net: Net, batch: int) -> float:
    """FLOPs of a step's convolutions and affine layers, counted as direct products
    (2 per multiply-add): forward; dx and dw for layers after the first trainable one,
    dw only for that one; forward only for frozen layers before it."""
    root = _network(net).root
    total, seen_trainable = 0.0, False
    for module in root.modules():
        if not isinstance(module, (nnm.Conv2d, nnm.Linear)):
            continue
        fwd = float(module.flops(module.in_shape)) * batch
        if not module.has_trainable_params():
            total += fwd * (3 if seen_trainable else 1)
            continue
        total += fwd * (3 if seen_trainable else 2)
        seen_trainable = True
    return total


# --- nndl side ----------------------------------------------------------------------------


class _NndlNet:
    """The network as users build it (nndl.network.Network from the spec) with an update
    rule on every parameter; times each top-level layer when asked."""

    def __init__(self, net: Net, batch: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.net = net
        self.model = _network(net, seed)
        self.model.recompute = net.recompute
        self.X = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        self.y = rng.integers(0, net.classes, batch)
        base = {"learning_rate": net.lr}
        if net.update != "adam":
            base["momentum"] = net.momentum
        self.configs = {k: dict(base) for k in self.model.params}
        self.rules = {k: net.update for k in self.model.params}
        if net.muon:  # airbench94_muon: Muon on the conv filters, the whitening filters frozen
            del self.rules["whiten.W"]
            for k in self.rules:
                if k.endswith("conv.W"):
                    self.rules[k], self.configs[k] = "muon", dict(MUON_FILTERS)
        self.rules = {k: (n, optim.get_update_rule(n)) for k, n in self.rules.items()}
        self.timings: dict[str, list[float]] | None = None
        for layer in self.model.root.layers:
            for kind in ("forward", "backward"):
                setattr(layer, kind, self._timed(layer, kind))

    def _timed(self, layer, kind: str):
        f = getattr(layer, kind)
        key = f"{layer.name} {'fwd' if kind == 'forward' else 'bwd'}"

        def timed(*args):
            if self.timings is None:
                return f(*args)
            t = time.perf_counter()
            out = f(*args)
            self.timings.setdefault(key, []).append(time.perf_counter() - t)
            return out

        return timed

    @property
    def layer_names(self) -> list[str]:
        return [f"{m.name} ({m.type_name})" for m in self.model.root.layers]

    def step(self) -> float:
        # As the Solver: the parameters without a rule (frozen) get no gradient computed.
        loss, grads = step_loss(self.model, self.X, self.y, set(self.rules))
        params = self.model.params
        spent: dict[str, float] = {}
        for k, (name, rule) in self.rules.items():
            t = time.perf_counter()
            params[k], self.configs[k] = rule(params[k], grads[k], self.configs[k])
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        if self.timings is not None:
            for name, t in spent.items():
                self.timings.setdefault(f"update {name}", []).append(t)
        return loss


# --- torch side ---------------------------------------------------------------------------


def _torch_module(m):
    """The PyTorch module computing what the bound nndl.nn module m computes."""
    C = m.in_shape[0]
    if isinstance(m, nnm.Sequential):  # fused blocks too: their children in order
        return nn.Sequential(*[_torch_module(c) for c in m.layers])
    if isinstance(m, nnm.Residual):
        short = None if m.shortcut is None else _torch_module(m.shortcut)
        return _TorchResidual(_torch_module(m.body), short)
    if isinstance(m, nnm.Conv2d):
        conv = nn.Conv2d(C, m.filters, m.kernel_size, m.stride, m.conv_param["pad"], bias=m.bias)
        return conv.requires_grad_(m.trainable)
    if isinstance(m, (nnm.BatchNorm2d, nnm.BatchNorm1d)):
        cls = nn.BatchNorm2d if isinstance(m, nnm.BatchNorm2d) else nn.BatchNorm1d
        bn = cls(C, eps=m.eps, momentum=1 - m.momentum)  # nndl keeps `momentum` of the old
        bn.weight.requires_grad_(m.scale)
        return bn
    if isinstance(m, nnm.Linear):
        lin = [nn.Flatten(), nn.Linear(math.prod(m.in_shape), m.units, bias=m.bias)]
        lin[1].requires_grad_(m.trainable)
        return nn.Sequential(*lin, *([_Scale(m.scale)] if m.scale else []))
    simple = {
        nnm.ReLU: lambda: nn.ReLU(),
        nnm.GELU: lambda: nn.GELU(approximate="tanh"),
        nnm.MaxPool2d: lambda: nn.MaxPool2d(m.pool_size, m.stride),  # floor mode
        nnm.AvgPool2d: lambda: nn.AvgPool2d(m.pool_size, m.stride),
        nnm.Flatten: lambda: nn.Flatten(),
        nnm.GlobalAvgPool: lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nnm.GlobalMaxPool: lambda: nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()),
        nnm.Dropout: lambda: nn.Dropout(1 - m.p),
    }
    return simple[type(m)]()


if torch is not None:

    class _TorchResidual(nn.Module):
        def __init__(self, body, shortcut) -> None:
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class _Scale(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return x * self.scale


def _torch_step(net: Net, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = _torch_module(_network(net).root)
    params = [p for p in model.parameters() if p.requires_grad]
    if net.muon:
        from torch_muon import airbench_muon_optimizers

        opts = airbench_muon_optimizers(model, MUON_FILTERS, {"lr": net.lr})[:2]
    elif net.update == "adam":
        opts = (torch.optim.Adam(params, lr=net.lr),)
    else:
        nesterov = net.update in ("nesterov_momentum", "sgdw")
        opts = (torch.optim.SGD(params, lr=net.lr, momentum=net.momentum, nesterov=nesterov),)
    X = torch.randn(batch, *net.input_shape)
    y = torch.randint(0, net.classes, (batch,))

    def step():
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X), y, label_smoothing=net.label_smoothing)
        loss.backward()
        for opt in opts:
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
    """Medians over ``reps`` interleaved pairs: a's and b's wall seconds, their CPU
    seconds (this process, all threads), and the median of the per-pair ratios a/b."""
    a()
    if b is not None:
        b()
    times: dict = {a: ([], []), b: ([], [])}
    ratios = []
    for i in range(reps):
        order = (a, b) if i % 2 == 0 or b is None else (b, a)
        for f in order:
            if f is None:
                continue
            t, c = time.perf_counter(), time.process_time()
            f()
            times[f][0].append(time.perf_counter() - t)
            times[f][1].append(time.process_time() - c)
        if b is not None:
            ratios.append(times[a][0][-1] / times[b][0][-1])
    med = statistics.median

    def meds(f):
        return (med(times[f][0]), med(times[f][1])) if times[f][0] else (None, None)

    return meds(a), meds(b), (med(ratios) if ratios else None)


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
    lines = ["| layer | fwd ms | bwd ms | share |", "|---|---:|---:|---:|"]
    for layer, label in zip(model.model.root.layers, model.layer_names, strict=True):
        f, b = rows.get(layer.name + " fwd", 0.0), rows.get(layer.name + " bwd", 0.0)
        lines.append(f"| {label} | {f * 1e3:.1f} | {b * 1e3:.1f} | {(f + b) / total:.0%} |")
    for key in sorted(k for k in rows if k.startswith("update")):
        u = rows[key]
        lines.append(f"| {key} | {u * 1e3:.1f} | - | {u / total:.0%} |")
    return lines


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS, nndl and torch threads")
    parser.add_argument("--reps", type=int, default=None, help="paired repetitions (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 reps, smaller batches")
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--batch", type=int, default=None, help="override every net's batch")
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
        "| network | batch | nndl ms | torch ms | nndl/torch | nndl CPU ms | torch CPU ms "
        "| model GFLOP/s | of GEMM peak | nndl MB | torch MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details = []
    for name in args.nets:
        net = NETS[name]
        batch = args.batch or ((net.quick_batch or net.batch) if args.quick else net.batch)
        model = _NndlNet(net, batch)
        tstep = _torch_step(net, batch) if torch is not None else None
        (a, ac), (b, bc), r = paired(model.step, tstep, reps)
        gf = model_flops(net, batch) / a / 1e9
        mem_n = mem_t = None
        if not args.no_memory:
            mem_n = peak_memory(name, "nndl", batch, threads)
            mem_t = peak_memory(name, "torch", batch, threads) if torch is not None else None
        ratio = "-" if r is None else f"**{r:.2f}**"
        tms = "-" if b is None else f"{b * 1e3:.1f}"
        tcpu = "-" if bc is None else f"{bc * 1e3:.0f}"
        summary.append(
            f"| {name} | {batch} | {a * 1e3:.1f} | {tms} | {ratio} | {ac * 1e3:.0f} | {tcpu} "
            f"| {gf:.1f} | {gf / peak:.0%} | {_mb(mem_n)} | {_mb(mem_t)} |"
        )
        details += [f"\n{name}: {net.description}; batch {batch}", *layer_table(model, reps)]
        print(summary[-1], flush=True)
    print("\n" + "\n".join(summary))
    print("\n".join(details))
    print("\nload average after the run: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
