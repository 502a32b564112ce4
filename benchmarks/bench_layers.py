"""Time nndl's fast layers against the naive ones and against PyTorch on the CPU.

Prints Markdown tables of medians over paired repetitions (after one warm-up call):

1. naive vs fast speedups at SPEC's timing shapes;
2. nndl vs PyTorch CPU (``torch.nn.functional.conv2d`` / ``max_pool2d`` with autograd) for
   float32 and float64, as ``ratio = nndl time / torch time`` (below 1: nndl is faster);
3. one full float32 training step (batch 50: conv 64 3x3 - spatial BN - relu - 2x2 pool -
   affine 500 - BN - relu - affine 10 - softmax, Adam on every parameter) against the same
   network in PyTorch.

Each repetition times nndl and torch back to back (alternating which goes first) and the
ratio column is the median of the per-repetition ratios, so load from other processes
hits both sides alike. PyTorch runs with as many threads as NumPy's BLAS uses. PyTorch is
optional: without it the torch columns are skipped.

    python benchmarks/bench_layers.py            # full run
    python benchmarks/bench_layers.py --quick    # fewer repetitions, smaller naive runs
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import statistics
import time
from collections.abc import Callable

# isort: off
import nndl  # noqa: F401 - first: it sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS

# isort: on
import numpy as np

from nndl.conv_layer_utils import conv_bn_relu_pool_backward, conv_bn_relu_pool_forward
from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from nndl.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from nndl.layer_utils import affine_batchnorm_relu_backward, affine_batchnorm_relu_forward
from nndl.layers import affine_backward, affine_forward, softmax_loss
from nndl.optim import adam

try:
    import torch
    import torch.nn.functional as tnf
except ImportError:  # PyTorch is an optional peer, never a dependency.
    torch = None

CONV_SHAPES = [
    ((100, 3, 31, 31), (25, 3, 3, 3), 2, 1),
    ((50, 3, 32, 32), (64, 3, 3, 3), 1, 1),
    ((50, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ((50, 64, 16, 16), (128, 64, 3, 3), 1, 1),
]
POOL_SHAPES = [((50, 64, 32, 32), 2, 2), ((50, 64, 33, 33), 3, 2)]


def _openblas():
    """NumPy's bundled OpenBLAS (wheels ship it in numpy.libs), or None."""
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*")):
        return ctypes.CDLL(path)
    return None


def _blas_call(suffix: str, *args):
    lib = _openblas()
    for prefix in ("scipy_openblas_", "openblas_"):
        for name in (f"{prefix}{suffix}64_", f"{prefix}{suffix}"):
            if lib is not None and hasattr(lib, name):
                return getattr(lib, name)(*args)
    raise RuntimeError(f"cannot reach NumPy's OpenBLAS to call {suffix}")


def blas_threads() -> int:
    """Threads NumPy's OpenBLAS uses (asked from the library itself when possible)."""
    try:
        return int(_blas_call("get_num_threads"))
    except RuntimeError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def _once(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def paired(a: Callable[[], object], b: Callable[[], object] | None, reps: int):
    """Median seconds of a and b over ``reps`` back-to-back pairs, and the median a/b."""
    a()
    if b is not None:
        b()
    ta, tb, ratios = [], [], []
    for i in range(reps):
        if b is None:
            ta.append(_once(a))
            continue
        if i % 2:
            y, x = _once(b), _once(a)
        else:
            x, y = _once(a), _once(b)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    med = statistics.median
    return med(ta), (med(tb) if tb else None), (med(ratios) if ratios else None)


def ms(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:.2f}"


# --- naive vs fast ------------------------------------------------------------------------


def naive_table(reps: int, naive_reps: int, quick: bool) -> list[str]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3, 31, 31))
    w = rng.standard_normal((25, 3, 3, 3))
    b = rng.standard_normal(25)
    cp = {"stride": 2, "pad": 1}
    xp_ = rng.standard_normal((100, 3, 32, 32))
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cn = conv_forward_naive(x, w, b, cp)
    _, cf = conv_forward_fast(x, w, b, cp)
    dout = rng.standard_normal(out.shape)
    pout, pn = max_pool_forward_naive(xp_, pp)
    _, pf = max_pool_forward_fast(xp_, pp)
    pdout = rng.standard_normal(pout.shape)
    cases = [
        (
            "conv forward",
            lambda: conv_forward_naive(x, w, b, cp),
            lambda: conv_forward_fast(x, w, b, cp),
        ),
        (
            # Same naive time; the fast side caches x instead of a fresh column buffer.
            "conv forward, 'recompute'",
            None,
            lambda: conv_forward_fast(x, w, b, {**cp, "recompute": True}),
        ),
        (
            "conv backward",
            lambda: conv_backward_naive(dout, cn),
            lambda: conv_backward_fast(dout, cf),
        ),
        (
            "pool forward",
            lambda: max_pool_forward_naive(xp_, pp),
            lambda: max_pool_forward_fast(xp_, pp),
        ),
        (
            "pool backward",
            lambda: max_pool_backward_naive(pdout, pn),
            lambda: max_pool_backward_fast(pdout, pf),
        ),
    ]
    rows = [
        "| layer (float64) | shape | naive ms | fast ms | speedup |",
        "|---|---|---:|---:|---:|",
    ]
    for name, naive, fast in cases:
        shape = "x (100,3,31,31) w (25,3,3,3) s2 p1" if "conv" in name else "x (100,3,32,32) 2x2/2"
        # The naive side is slow: no warm-up and fewer repetitions (it has no caches to warm).
        if naive is not None:
            tn = statistics.median(_once(naive) for _ in range(naive_reps))
        tf = paired(fast, None, reps)[0]
        rows.append(f"| {name} | {shape} | {ms(tn)} | {ms(tf)} | {tn / tf:.0f}x |")
    return rows


# --- nndl vs torch ------------------------------------------------------------------------


def _conv_pair(dtype, x_shape, w_shape, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    cp = {"stride": stride, "pad": pad}
    out, _ = conv_forward_fast(x, w, b, cp)
    dout = rng.standard_normal(out.shape).astype(dtype)

    def nndl_fwd():
        return conv_forward_fast(x, w, b, cp)

    def nndl_step():
        conv_backward_fast(dout, conv_forward_fast(x, w, b, cp)[1])

    if torch is None:
        return nndl_fwd, nndl_step, None, None
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    dt = torch.tensor(dout)

    def torch_fwd():
        with torch.no_grad():
            return tnf.conv2d(xt, wt, bt, stride=stride, padding=pad)

    def torch_step():
        xt.grad = wt.grad = bt.grad = None
        tnf.conv2d(xt, wt, bt, stride=stride, padding=pad).backward(dt)

    return nndl_fwd, nndl_step, torch_fwd, torch_step


def _pool_pair(dtype, x_shape, k, s):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    pp = {"pool_height": k, "pool_width": k, "stride": s}
    out, _ = max_pool_forward_fast(x, pp)
    dout = rng.standard_normal(out.shape).astype(dtype)

    def nndl_fwd():
        return max_pool_forward_fast(x, pp)

    def nndl_step():
        max_pool_backward_fast(dout, max_pool_forward_fast(x, pp)[1])

    if torch is None:
        return nndl_fwd, nndl_step, None, None
    xt = torch.tensor(x, requires_grad=True)
    dt = torch.tensor(dout)

    def torch_fwd():
        with torch.no_grad():
            return tnf.max_pool2d(xt, k, s)

    def torch_step():
        xt.grad = None
        tnf.max_pool2d(xt, k, s).backward(dt)

    return nndl_fwd, nndl_step, torch_fwd, torch_step


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def torch_table(reps: int) -> list[str]:
    rows = [
        "| layer | shape | dtype | nndl fwd ms | torch fwd ms | fwd ratio "
        "| nndl fwd+bwd ms | torch fwd+bwd ms | fwd+bwd ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cases = []
    for xs, ws, s, p in CONV_SHAPES:
        label = f"x {_fmt(xs)} w {_fmt(ws)} s{s} p{p}"
        cases.append(("conv", label, lambda dt, a=(xs, ws, s, p): _conv_pair(dt, *a)))
    for xs, k, s in POOL_SHAPES:
        label = f"x {_fmt(xs)} {k}x{k}/{s}"
        cases.append(("max pool", label, lambda dt, a=(xs, k, s): _pool_pair(dt, *a)))
    for dtype in (np.float32, np.float64):
        for kind, label, make in cases:
            nf, ns, tf, ts = make(dtype)
            a_f, b_f, r_f = paired(nf, tf, reps)
            a_s, b_s, r_s = paired(ns, ts, reps)
            rf = "-" if r_f is None else f"{r_f:.2f}"
            rs = "-" if r_s is None else f"**{r_s:.2f}**"
            rows.append(
                f"| {kind} | {label} | {np.dtype(dtype).name} | {ms(a_f)} | {ms(b_f)} | {rf} "
                f"| {ms(a_s)} | {ms(b_s)} | {rs} |"
            )
    return rows


# --- one training step --------------------------------------------------------------------


def _nndl_step(seed: int = 3):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    X = rng.standard_normal((50, 3, 32, 32)).astype(f32)
    y = rng.integers(0, 10, 50)
    p = {
        "W1": (1e-2 * rng.standard_normal((64, 3, 3, 3))).astype(f32),
        "b1": np.zeros(64, f32),
        "gamma1": np.ones(64, f32),
        "beta1": np.zeros(64, f32),
        "W2": (1e-2 * rng.standard_normal((64 * 16 * 16, 500))).astype(f32),
        "b2": np.zeros(500, f32),
        "gamma2": np.ones(500, f32),
        "beta2": np.zeros(500, f32),
        "W3": (1e-2 * rng.standard_normal((500, 10))).astype(f32),
        "b3": np.zeros(10, f32),
    }
    cp = {"stride": 1, "pad": 1}
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    bn1, bn2 = {"mode": "train"}, {"mode": "train"}
    configs = {k: {"learning_rate": 1e-3, "inplace": True} for k in p}

    def step():
        h1, c1 = conv_bn_relu_pool_forward(
            X, p["W1"], p["b1"], p["gamma1"], p["beta1"], cp, bn1, pp
        )
        h2, c2 = affine_batchnorm_relu_forward(h1, p["W2"], p["b2"], p["gamma2"], p["beta2"], bn2)
        scores, c3 = affine_forward(h2, p["W3"], p["b3"])
        loss, ds = softmax_loss(scores, y)
        g = {}
        dh2, g["W3"], g["b3"] = affine_backward(ds, c3)
        dh1, g["W2"], g["b2"], g["gamma2"], g["beta2"] = affine_batchnorm_relu_backward(dh2, c2)
        _, g["W1"], g["b1"], g["gamma1"], g["beta1"] = conv_bn_relu_pool_backward(dh1, c1)
        for k in p:
            p[k], configs[k] = adam(p[k], g[k], configs[k])
        return loss

    return step


def _torch_step(seed: int = 3):
    torch.manual_seed(seed)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16 * 16, 500),
        nn.BatchNorm1d(500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X = torch.randn(50, 3, 32, 32)
    y = torch.randint(0, 10, (50,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = tnf.cross_entropy(net(X), y)
        loss.backward()
        opt.step()
        return loss

    return step


def step_table(reps: int) -> list[str]:
    nndl_step = _nndl_step()
    torch_step = _torch_step() if torch is not None else None
    a, b, r = paired(nndl_step, torch_step, reps)
    rr = "-" if r is None else f"**{r:.2f}**"
    return [
        "| training step (float32, batch 50) | nndl ms | torch ms | ratio |",
        "|---|---:|---:|---:|",
        f"| conv64 3x3-sbn-relu-pool-affine500-bn-relu-affine10, softmax, adam "
        f"| {ms(a)} | {ms(b)} | {rr} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None, help="paired repetitions (>= 5)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="set NumPy's OpenBLAS (and so torch) to this many threads; default: leave it",
    )
    args = parser.parse_args(argv)
    if args.threads:
        _blas_call("set_num_threads", ctypes.c_int(args.threads))
    reps = args.reps or (5 if args.quick else 11)
    naive_reps = 1 if args.quick else 3
    threads = blas_threads()
    print(
        f"numpy {np.__version__}, BLAS threads {threads}, "
        f"{os.cpu_count()} CPUs ({platform.machine()})"
    )
    if hasattr(os, "getloadavg"):
        print("load average before the run: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"{var}={os.environ[var]}")
    if torch is None:
        print("PyTorch is not installed: the torch columns are skipped.")
    else:
        torch.set_num_threads(threads)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"median of {reps} paired repetitions after one warm-up (naive side: {naive_reps})\n")
    for table in (naive_table(reps, naive_reps, args.quick), torch_table(reps), step_table(reps)):
        print("\n".join(table), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
