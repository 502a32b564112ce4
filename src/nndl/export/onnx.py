"""ONNX export: :func:`to_onnx` turns a model and its preprocessing into an ONNX graph.

How it works. Every model is first described as a :class:`~nndl.export.trees.LayerTree`
(a bound :mod:`nndl.nn` module tree plus the arrays its layers read;
:mod:`nndl.export.trees`); the exporter then walks the tree and asks
:data:`~nndl.export.graph.EMITTERS` for each module's ONNX nodes (containers emit their
children; a new layer type needs one small emitter, see :mod:`nndl.export.graph`).

The graph. Input ``images``: float32 ``(N, *input_shape)``, raw pixel values (0-255)
with a dynamic batch dimension ``N``. Then the preprocessing (``x - mean_image``, then
``(x - mean[c]) / std[c]`` per channel), the network in inference form (batch norm with
its running statistics, dropout omitted) and ``Softmax``: output ``probabilities``
``(N, num_classes)``. Everything is float32 whatever the model's dtype.

Opset. :data:`DEFAULT_OPSET` is 17, which most runtimes and converters accept; there
GELU (tanh form) is written out as its formula ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x +
0.044715 * x**3)))`` in Mul/Add/Tanh nodes. From opset 20 on it is ONNX's own
``Gelu(approximate="tanh")``. Opsets :data:`MIN_OPSET` (13) and up are accepted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes
from .graph import INPUT_NAME, OUTPUT_NAME, OnnxGraph
from .trees import LayerTree, layer_tree

DEFAULT_OPSET = 17
MIN_OPSET = 13
PREPROCESS_KEYS = ("mean_image", "mean", "std", "class_names", "dtype")

_FN = "to_onnx"


def _import_onnx():
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "nndl.export.to_onnx needs the onnx package: pip install 'nndl[onnx]'"
        ) from exc
    return onnx


# --- preprocessing --------------------------------------------------------------------


def _finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{_FN}: expected preprocess[{name!r}] to be numbers, got {value!r}"
        ) from None
    if a.shape != shape:
        raise ValueError(
            f"{_FN}: expected preprocess[{name!r}] of shape {shape} (the model's input per "
            f"example{', channels' if len(shape) == 1 else ''}), got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{_FN}: preprocess[{name!r}] holds non-finite values")
    return a


def check_preprocess(preprocess: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Validated preprocessing: ``mean_image`` (the input shape) and/or ``mean`` and
    ``std`` (one per channel, std > 0); ``class_names`` (one per class, optional) and
    ``dtype`` (what a run folder's ``preprocess.npz`` also holds; ignored) may come too."""
    if not isinstance(preprocess, Mapping):
        raise ValueError(
            f"{_FN}: expected preprocess as a dict such as {{'mean_image': array}} or "
            f"{{'mean': [...], 'std': [...]}} ({{}} for none), got {type(preprocess).__name__}"
        )
    unknown = sorted(set(preprocess) - set(PREPROCESS_KEYS))
    if unknown:
        raise ValueError(
            f"{_FN}: unknown preprocess key(s) {unknown}; expected some of {list(PREPROCESS_KEYS)}"
        )
    out: dict[str, Any] = {}
    if "mean_image" in preprocess:
        out["mean_image"] = _finite_array("mean_image", preprocess["mean_image"], input_shape)
    if ("mean" in preprocess) != ("std" in preprocess):
        raise ValueError(f"{_FN}: preprocess needs both 'mean' and 'std', or neither")
    if "mean" in preprocess:
        if len(input_shape) != 3:
            raise ValueError(
                f"{_FN}: per-channel 'mean'/'std' need a (C, H, W) input, but the model takes "
                f"{input_shape}"
            )
        C = (input_shape[0],)
        out["mean"] = _finite_array("mean", preprocess["mean"], C)
        out["std"] = _finite_array("std", preprocess["std"], C)
        if not np.all(out["std"] > 0):
            raise ValueError(f"{_FN}: expected every preprocess std > 0, got {out['std'].tolist()}")
    if preprocess.get("class_names") is not None:
        out["class_names"] = [str(n) for n in preprocess["class_names"]]
    return out


def _emit_preprocess(g: OnnxGraph, pre: dict[str, Any], x: str) -> str:
    if "mean_image" in pre:
        x = g.node("Sub", [x, g.constant("preprocess/mean_image", pre["mean_image"])],
                   "preprocess")  # fmt: skip
    if "mean" in pre:
        per_channel = (-1, 1, 1)  # broadcasts over (N, C, H, W)
        mean = g.constant("preprocess/mean", pre["mean"].reshape(per_channel))
        std = g.constant("preprocess/std", pre["std"].reshape(per_channel))
        x = g.node("Div", [g.node("Sub", [x, mean], "preprocess"), std], "preprocess")
    return x


def _describe(pre: dict[str, Any]) -> str:
    steps = []
    if "mean_image" in pre:
        steps.append("x - mean_image")
    if "mean" in pre:
        steps.append("(x - mean[c]) / std[c] per channel")
    return ", then ".join(steps) or "none"


# --- the entry point --------------------------------------------------------------------


def _check_opset(onnx: Any, opset: Any) -> int:
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ValueError(
            f"{_FN}: expected opset as an int in [{MIN_OPSET}, {latest}], got {opset!r}"
        )
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"{_FN}: expected opset in [{MIN_OPSET}, {latest}], got {opset}")
    return int(opset)


def _input_tree(model: Any, preprocess: Any, input_shape: Any) -> LayerTree:
    """The model's tree; a fully connected net takes images of the mean image's shape."""
    tree = layer_tree(model, input_shape)
    mean_image = preprocess.get("mean_image") if isinstance(preprocess, Mapping) else None
    if input_shape is None and tree.flat_input and mean_image is not None:
        shape = tuple(np.shape(mean_image))
        if shape != tree.input_shape and math.prod(shape) == math.prod(tree.input_shape):
            tree = layer_tree(model, shape)
    return tree


def to_onnx(
    model: Any,
    preprocess: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Any:
    """An ONNX model (``onnx.ModelProto``) that classifies raw images as ``model`` does.

    ``preprocess`` is what training did to the raw pixels: ``{"mean_image": (C, H, W)}``
    (a run folder's ``preprocess.npz``) and/or ``{"mean": (C,), "std": (C,)}`` (per-channel
    normalisation, applied after the mean image); ``{}`` for none. ``class_names`` in it
    go into the model's metadata. Input ``images`` float32 ``(N, *input_shape)`` raw
    pixels (0-255), output ``probabilities`` ``(N, num_classes)``. ``input_shape``
    defaults to the model's input; a fully connected net (input_dim D) takes the mean
    image's shape when it has D values, else ``(D,)``. ``opset`` from :data:`MIN_OPSET`
    up (default :data:`DEFAULT_OPSET`). The result passes ``onnx.checker.check_model``
    with ``full_check=True``; with ``path`` it is also written there (atomically).

    Raises ``ValueError`` for an unsupported model or layer (named), bad preprocessing,
    or an opset out of range; ``ImportError`` without the ``onnx`` package.
    """
    onnx = _import_onnx()
    opset = _check_opset(onnx, opset)
    tree = _input_tree(model, preprocess, input_shape)
    pre = check_preprocess(preprocess, tree.input_shape)
    out_shape = tuple(tree.root.output_shape)
    if len(out_shape) != 1:
        raise ValueError(
            f"{_FN}: expected the model to output (num_classes,) scores, got {out_shape}"
        )
    if "class_names" in pre and len(pre["class_names"]) != out_shape[0]:
        raise ValueError(
            f"{_FN}: preprocess has {len(pre['class_names'])} class_names but the model has "
            f"{out_shape[0]} classes"
        )

    g = OnnxGraph(onnx, tree, opset)
    x = _emit_preprocess(g, pre, INPUT_NAME)
    logits = g.emit(tree.root, x)
    g.node("Softmax", [logits], "", output=OUTPUT_NAME, axis=1)
    return _finish(onnx, g, model, pre, out_shape[0], path)


def _finish(onnx: Any, g: OnnxGraph, model: Any, pre: dict, num_classes: int, path: Any):
    from .. import __version__

    helper, FLOAT = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        f"nndl_{getattr(model, 'name', type(model).__name__)}",
        [helper.make_tensor_value_info(INPUT_NAME, FLOAT, ["N", *g.tree.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, FLOAT, ["N", num_classes])],
        list(g.initializers.values()),
        doc_string=(
            f"input {INPUT_NAME}: raw pixel values 0-255; preprocessing: {_describe(pre)}; "
            f"output {OUTPUT_NAME}: softmax over {num_classes} classes"
        ),
    )
    opsets = [helper.make_opsetid("", g.opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="nndl",
                              producer_version=__version__)  # fmt: skip
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    meta = {"nndl_model": getattr(model, "name", ""), "preprocess": _describe(pre)}
    config = getattr(model, "config", None)
    if config is not None:
        meta["nndl_config"] = json.dumps(config)
    if "class_names" in pre:
        meta["class_names"] = json.dumps(pre["class_names"])
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, proto.SerializeToString())
    return proto


__all__ = [
    "to_onnx",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "PREPROCESS_KEYS",
    "check_preprocess",
]
