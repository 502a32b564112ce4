"""A run's memory, planned before any data loads or a run folder is written:
:func:`plan_memory` adds up what training will hold and :func:`check_memory` refuses a plan
larger than the memory this machine has available.

The plan is an estimate from shapes alone (nothing is allocated for a spec-built model):

- the interpreter with NumPy and nndl (:data:`RUNTIME_BYTES`);
- the parameters, times the copies training keeps of them: the weights, their gradients,
  the best weights, the update rule's state (probed: the arrays the rule keeps shaped like
  its parameter) and the weight average of ``--ema``;
- the activations of one training step: the layer outputs ``summary()`` counts for the
  batch, times :data:`ACTIVATION_FACTOR` (the backward pass's gradients of the same size
  and the fast paths' scratch, measured on the default run);
- the data: every image loaded as float32 (and in the run's dtype, if it is not float32),
  but the training images of a data set read as 8-bit pixels (``Dataset.pixels``:
  CIFAR-10), which stay so, one byte each; plus the raw 8-bit batches the loader reads.

A refusal names the figure and ``--no-memory-check``, which starts the run anyway.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import reads_pixels
from ..export.trees import layer_tree
from ..models import MODELS, build_model
from ..nn import build, summarize
from ..optim import get_update_rule
from .errors import CLIError

__all__ = ["ACTIVATION_FACTOR", "RUNTIME_BYTES", "available_memory", "check_memory", "plan_memory"]

# Peak resident memory of training over the layer outputs summary() counts, measured
# (benchmarks/bench_memory.py): the default run (convnet 16-32-64, batch 64) holds about
# 2x its outputs, the ladder's fused nets (batch 1024) less; 2 keeps the plan an upper
# bound for the unfused layers without refusing fused nets.
ACTIVATION_FACTOR = 2
# The interpreter with NumPy, numba and nndl imported (peak resident memory, measured).
RUNTIME_BYTES = 128 << 20
_EVAL_BATCH = 100  # Solver.check_accuracy's batch: test-mode passes hold its outputs
_RAW_IMAGES = 60_000  # the CIFAR-10 loader reads every batch as uint8 first
_MIB = 1 << 20


def _state_copies(rule_name: str, config: Mapping[str, Any] | None) -> int:
    """How many arrays shaped like its parameter the update rule keeps (one step probed)."""
    w = np.ones((2, 3), np.float32)
    _, state = get_update_rule(rule_name)(w.copy(), w.copy(), dict(config or {}))
    return sum(isinstance(v, np.ndarray) and v.shape == w.shape for v in state.values())


def _layer_root(name: str, kwargs: Mapping[str, Any]):
    """The model's bound layer tree: from its spec (nothing allocated) when it has one,
    else from a built copy (the hand-written models, whose size preflight has capped)."""
    cls = MODELS[name]
    spec = kwargs.get("layers") if name == "network" else None
    if spec is None and callable(getattr(cls, "layers", None)):
        spec = cls.layers(**kwargs)
    if spec is not None:
        root = build(spec)
        root.bind(tuple(kwargs["input_dim"]))
        return root
    return layer_tree(build_model(name, **kwargs)).root


def plan_memory(
    settings: Mapping[str, Any],
    kwargs: Mapping[str, Any],
    input_dim: tuple[int, ...] = (3, 32, 32),
) -> dict[str, int]:
    """Bytes training with ``settings`` will hold, by part, and their ``total``.

    ``kwargs`` are the model's constructor keywords (:func:`nndl.cli.model_plan.preflight`).
    """
    dtype = np.dtype(settings["dtype"])
    # kwargs' own input_dim first: the fully connected nets take it as one int.
    root = _layer_root(settings["model"], {"input_dim": list(input_dim), **kwargs})
    step = summarize(root, dtype, settings["batch_size"])
    evaluation = summarize(root, dtype, _EVAL_BATCH)["activation_bytes"]
    copies = 3 + _state_copies(settings["update_rule"], None) + bool(settings.get("ema"))
    pixels = reads_pixels(settings.get("dataset", "cifar10"))  # training set kept as bytes
    held = settings["num_validation"] + settings["num_test"]
    per_image = math.prod(input_dim)
    as_float = 4 + (dtype.itemsize if dtype != np.float32 else 0)
    train = settings["num_training"] * per_image * (1 if pixels else as_float)
    plan = {
        "runtime": RUNTIME_BYTES,
        "parameters": step["param_bytes"] * copies,
        "activations": max(step["activation_bytes"] * ACTIVATION_FACTOR, evaluation),
        "data": train + held * per_image * as_float + _RAW_IMAGES * per_image,
    }
    plan["total"] = sum(plan.values())
    return plan


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup (v2) may still use, if it sets a limit."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((base / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this machine can give a new process now (MemAvailable, within a container's
    limit), or None where the system does not say."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    room = _cgroup_room()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


def check_memory(plan: Mapping[str, int], available: int | None) -> None:
    """Refuse a ``plan`` larger than ``available`` bytes, naming the parts and the flag
    that starts the run anyway."""
    if available is None or plan["total"] <= available:
        return
    parts = ", ".join(f"{k} {plan[k] / _MIB:,.0f} MiB" for k in plan if k != "total")
    raise CLIError(
        f"training would need about {plan['total'] / _MIB:,.0f} MiB ({parts}) but "
        f"{available / _MIB:,.0f} MiB is available; use a smaller --batch-size, model or "
        "--num-training, or pass --no-memory-check to start anyway"
    )
