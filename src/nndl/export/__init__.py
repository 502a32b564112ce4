"""Export trained nndl models to other formats; today ONNX (:func:`to_onnx`).

The ONNX graph takes raw float32 pixels (0-255) with a dynamic batch size, applies the
run's preprocessing, runs the network and returns class probabilities, so any ONNX
runtime can classify images with no nndl code around it. Requires the ``onnx`` extra
(``pip install 'nndl[onnx]'``, which also brings onnxruntime to check the result);
``import nndl.export`` works without it.

Adding a layer type: write one emitter ``(graph, module, x) -> y`` and register it in
:data:`EMITTERS` under the layer's class (see :mod:`nndl.export.graph`). A hand-written
model exports once :data:`MODEL_TREES` maps its class to a function describing it as an
:mod:`nndl.nn` layer tree.
"""

from .graph import EMITTERS, OnnxGraph
from .onnx import DEFAULT_OPSET, MIN_OPSET, PREPROCESS_KEYS, check_preprocess, to_onnx
from .trees import MODEL_TREES, LayerTree, layer_tree

__all__ = [
    "to_onnx",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "EMITTERS",
    "MODEL_TREES",
    "PREPROCESS_KEYS",
    "LayerTree",
    "OnnxGraph",
    "layer_tree",
    "check_preprocess",
]
