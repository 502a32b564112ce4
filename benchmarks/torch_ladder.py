"""PyTorch's time for a rung of the accuracy ladder: the same network and epochs.

For ``nndl train --preset NAME`` (:data:`nndl.cli.presets.PRESETS`) this builds the
preset's network in PyTorch 2.13 CPU, translated from the same bound nndl spec as
``bench_step.py`` does (same layers, floor-mode pools, tanh GELU, frozen whitening conv,
batch-norm settings, linear scale), and times, on the same machine and thread count:

- a training step at the preset's batch size (Nesterov SGD with coupled weight decay and
  label smoothing, as airbench94 runs it; for a preset with a Muon group, the ``94``,
  airbench94_muon's split: Muon from ``torch_muon.py`` on the conv filters, SGD on the
  biases and the head, the whitening filters frozen; forward, backward, update), the
  median of ``--steps`` steps after one warm-up; where a group trains for its first
  epochs only (the whitening bias), the later steps, without its gradient, are timed
  separately;
- a forward pass in eval mode without gradients over the same batch size.

It then reports the run's PyTorch time as an **extrapolation**, stated as such: steps x
step time + the forward passes the run evaluates (each epoch's 1,000-image training
accuracy check, and the test set with the preset's test-time augmentation views) x
forward time per image. Data loading and augmentation are not counted (they are cheap
next to a step), so the figure is a lower bound of what a PyTorch run would take::

    python benchmarks/torch_ladder.py --preset 94                   # about 3 minutes
    python benchmarks/torch_ladder.py --preset 80 --threads 2 --steps 3
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

# isort: off
import nndl  # noqa: F401 - first: it sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS

# isort: on
from nndl.cli.presets import PRESETS
from nndl.network import Network

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import _torch_module  # noqa: E402 - a sibling script
from bench_train import tta_view_count  # noqa: E402 - a sibling script

try:
    from torch_muon import airbench_muon_optimizers
except ImportError:  # PyTorch missing: main() says so
    airbench_muon_optimizers = None

try:
    import torch
    from torch import nn
except ImportError:  # PyTorch is an optional peer, never a dependency.
    torch = None

TRAIN_ACC_SAMPLES = 1000  # the Solver's per-epoch training-accuracy check


def _model(settings: dict):
    net = Network(settings["arch"], seed=0)
    return _torch_module(net.root)


def _timed(f, reps: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _group(settings: dict, key: str, value=None) -> dict | None:
    """The preset's first parameter group that has ``key`` (equal to ``value`` if given)."""
    for group in settings.get("param_groups") or []:
        if key in group and (value is None or group[key] == value):
            return group
    return None


def _optimizers(settings: dict, model) -> tuple[list, object]:
    """The preset's optimisers for the translated model, and the whitening conv when a
    group trains its bias for the first epochs only (else None)."""
    muon = _group(settings, "update_rule", "muon")
    if muon is None:
        params = [p for p in model.parameters() if p.requires_grad]
        return [torch.optim.SGD(params, lr=0.01, momentum=settings["momentum"], nesterov=True,
                                weight_decay=settings["weight_decay"])], None  # fmt: skip
    opts = airbench_muon_optimizers(model, muon["optim_config"],
                                    {"lr": 0.01, "weight_decay": settings["weight_decay"]})
    return list(opts[:2]), (opts[2] if _group(settings, "train_epochs") else None)


def measure(settings: dict, steps: int) -> dict:
    """Seconds per training step (and per later step, without the whitening bias's
    gradient, where it trains for the first epochs only) and per eval forward image."""
    torch.manual_seed(0)
    model = _model(settings)
    batch = settings["batch_size"]
    opts, whiten = _optimizers(settings, model)
    X = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    smoothing = settings.get("label_smoothing") or 0.0

    def step():
        model.train()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X), y, label_smoothing=smoothing)
        loss.backward()
        for opt in opts:
            opt.step()

    def forward():
        model.eval()
        with torch.no_grad():
            model(X)

    out = {"step_s": _timed(step, steps)}
    if whiten is not None:
        whiten.bias.requires_grad_(False)  # airbench94_muon: no gradient after its epochs
        out["late_step_s"] = _timed(step, steps)
    out["forward_per_image_s"] = _timed(forward, steps) / batch
    return out


def extrapolate(settings: dict, m: dict) -> dict:
    n = settings["num_training"]
    steps_per_epoch = max(n // settings["batch_size"], 1)
    steps = steps_per_epoch * settings["epochs"]
    early = steps
    if "late_step_s" in m:
        early = min(round(_group(settings, "train_epochs")["train_epochs"] * steps_per_epoch),
                    steps)  # fmt: skip
    images = settings["epochs"] * TRAIN_ACC_SAMPLES
    if settings.get("test_at_end"):
        images += settings["num_test"] * tta_view_count(settings.get("tta", "none"))
    train_s = early * m["step_s"] + (steps - early) * m.get("late_step_s", 0.0)
    eval_s = images * m["forward_per_image_s"]
    return {"steps": steps, "train_s": train_s, "eval_s": eval_s, "total_s": train_s + eval_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, choices=[k for k in PRESETS if k != "65"])
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    p.add_argument("--steps", type=int, default=3, help="timed steps after a warm-up")
    args = p.parse_args(argv)
    if torch is None:
        print("torch_ladder: PyTorch is not installed (pip install -e '.[bench]')")
        return 2
    torch.set_num_threads(args.threads)
    settings = PRESETS[args.preset].settings
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    m = measure(settings, args.steps)
    e = extrapolate(settings, m)
    print(f"preset {args.preset}: batch {settings['batch_size']}, {e['steps']} steps "
          f"({settings['epochs']} epochs of {settings['num_training']} images)")  # fmt: skip
    print(f"  training step: {m['step_s']:.2f} s (median of {args.steps})")
    if "late_step_s" in m:
        print(f"  training step without the whitening bias: {m['late_step_s']:.2f} s")
    print(f"  eval forward: {m['forward_per_image_s'] * 1e3:.2f} ms per image")
    print(
        f"  extrapolated: training {e['train_s'] / 60:.1f} min + evaluation "
        f"{e['eval_s'] / 60:.1f} min = {e['total_s'] / 60:.1f} min "
        f"(steps x step time + forward images x time; data loading not counted)"
    )
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return 0 if math.isfinite(e["total_s"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
