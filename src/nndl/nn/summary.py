"""``summary``: per-layer output shape, parameter count and forward FLOPs of a bound tree.

Conventions: FLOPs are forward operations per example with a multiply-add counted as 2
(a conv is ``2 * C*k*k * F*H'*W'`` plus ``F*H'*W'`` for its bias); batch norm counts 2
per element (scale and shift, as at inference), ReLU 1, GELU 9, a residual add 1; each
module counts only its own operations, so the column sums to the total. Activation
bytes are the outputs of every layer that allocates one (views such as Flatten and the
containers' pass-through outputs excluded) for the batch: an estimate of what a training
step holds, which fused blocks undercut (they keep fewer intermediates).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .module import Module


def summarize(root: Module, dtype: Any = np.float32, batch_size: int = 1) -> dict[str, Any]:
    """Rows (one per module under ``root``, in tree order) and totals, as plain data.

    Each row: ``path``, ``type``, ``depth``, ``output_shape`` (per example), ``params``,
    ``trainable_params``, ``flops`` (own, per example), ``activation_bytes`` (for the
    batch). ``root`` must be bound (:meth:`Module.bind`).
    """
    if root.in_shape is None:
        raise ValueError("summarize: expected a bound module (call bind(in_shape) first)")
    itemsize = np.dtype(dtype).itemsize
    rows = []
    for module in root.modules():
        if module is root:
            continue
        specs = module.param_specs(module.in_shape)
        act = math.prod(module.output_shape) * batch_size * itemsize if module.allocates else 0
        rows.append(
            {
                "path": module.path,
                "type": type(module).__name__,
                "depth": module.path.count(".") - root.path.count(".") - (1 if root.path else 0),
                "output_shape": tuple(module.output_shape),
                "params": sum(s.size for s in specs.values()),
                "trainable_params": sum(s.size for s in specs.values() if s.trainable),
                "flops": module.flops(module.in_shape),
                "activation_bytes": act,
            }
        )
    params = sum(r["params"] for r in rows)
    return {
        "rows": rows,
        "input_shape": tuple(root.in_shape),
        "output_shape": tuple(root.output_shape),
        "batch_size": batch_size,
        "dtype": np.dtype(dtype).name,
        "total_params": params,
        "trainable_params": sum(r["trainable_params"] for r in rows),
        "total_flops": sum(r["flops"] for r in rows),
        "param_bytes": params * itemsize,
        "activation_bytes": sum(r["activation_bytes"] for r in rows),
    }


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:g} "


def format_summary(data: dict[str, Any]) -> str:
    """The text table of :func:`summarize`'s result."""
    head = ("layer", "type", "output shape", "params", "FLOPs")
    body = [
        ("  " * r["depth"] + r["path"], r["type"],
         str(r["output_shape"]), f"{r['params']:,}", f"{r['flops']:,}")
        for r in data["rows"]
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(5)]

    def fmt(line):
        left = [line[i].ljust(widths[i]) for i in range(3)]
        right = [line[i].rjust(widths[i]) for i in range(3, 5)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(head))
    n = data["batch_size"]
    lines = [f"input {data['input_shape']} -> output {data['output_shape']}", rule, fmt(head),
             rule, *map(fmt, body), rule]  # fmt: skip
    lines += [
        f"params: {data['total_params']:,} ({data['trainable_params']:,} trainable), "
        f"{_si(data['param_bytes'])}B in {data['dtype']}",
        f"forward FLOPs per example: {data['total_flops']:,} ({_si(data['total_flops'])}FLOP)",
        f"activations for a batch of {n}: {_si(data['activation_bytes'])}B",
    ]
    return "\n".join(lines)


__all__ = ["summarize", "format_summary"]
