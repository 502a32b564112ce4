"""nndl.nn: layer objects on the functional core, and networks described by a JSON spec.

Every layer object calls the functional ``*_forward``/``*_backward`` pairs of
:mod:`nndl.layers`, :mod:`nndl.conv_layers`, :mod:`nndl.fast_layers`,
:mod:`nndl.kernels.pool` and :mod:`nndl.conv_layer_utils`; none holds arrays. Parameters
live in ONE dict the model owns, keyed by layer path (``block1.conv.W``,
``block1.bn.gamma``), batch-norm running statistics likewise in a ``buffers`` dict
(``block1.bn.running_mean``), gradients in ``ctx.grads`` under the same keys. Layers
look them up at call time, so an optimiser may replace dict entries between steps.
Constructors take only output-side hyperparameters (filters, kernel size, units); input
shapes are inferred when a tree is bound to an input shape (:meth:`Module.bind`).

Architecture spec
-----------------
A JSON-serialisable list of layers. A layer is a type name from :data:`LAYERS` (all
defaults) or a dict ``{"type": ..., <argument>: value, ..., "name": optional}``;
containers nest lists::

    {"type": "sequential", "layers": [...]}
    {"type": "residual", "body": [...], "shortcut": "identity" | "projection" | [...]}

Layers without a name are named per type and position, unique per level (``conv1``,
``bn1``, ``relu1``, ``conv2``, ...; fused blocks ``block1``, ``block2``; residuals
``res1``); a layer's path is its container's path, a dot, and its name
(``res1.body.conv1``). Types and their arguments (defaults in parentheses):

- ``conv2d``: filters, kernel_size (3), stride (1), pad ("same" | "valid" | int;
  "same"), bias (true), init ("he_normal"), trainable (true; false freezes W and b, and
  a frozen first layer's backward pass is skipped)
- ``batchnorm2d`` / ``batchnorm1d``: momentum (0.9), eps (1e-5), scale (true; false
  fixes gamma at 1). nndl's momentum is the weight of the OLD running value:
  PyTorch's momentum m is ``1 - m`` here
- ``layernorm``: eps (1e-5); each example normalised over all its values, a scale and
  shift per feature (channel); ``groupnorm``: groups (32), eps (1e-5); the channels in
  groups, each normalised per example (no running statistics for either)
- ``relu``, ``gelu`` (tanh form), ``flatten``, ``global_avgpool``, ``global_maxpool``
- ``maxpool2d`` / ``avgpool2d``: pool_size (2), stride (pool_size), floor (false; true
  leaves out the rows and columns past the last whole window, PyTorch's default:
  31 -> 15 for 2x2)
- ``linear``: units, bias (true), scale (none; a constant output factor), init, trainable
- ``dropout``: p (0.5), the probability of KEEPING a unit
- ``conv_block``: the fused block (one fused pass after the conv, compiled with numba
  when installed): conv2d's arguments (but trainable), batchnorm (true) with batch norm's
  arguments, activation ("relu" | "gelu"; "relu"), pool (none | "after_conv" (conv - max
  pool - BN - act, airbench's order) | "last"), pool_size (2), pool_stride (pool_size),
  floor (false). Its parameters are ``<block>.conv.W``, ``<block>.bn.beta``, ... as if
  unfused. The names of earlier releases stay as aliases with their own arguments:
  ``conv_bn_act``, ``conv_pool_bn_act`` (with activation, pool_size, pool_stride, floor),
  ``conv_bn_relu``, ``conv_bn_relu_pool`` (pool_size), ``conv_relu``, ``conv_relu_pool``
  (pool_size; no batch norm)
- ``sequential``: layers; ``residual``: body, shortcut ("identity")

Initialisers (``init``): ``he_normal`` (``sqrt(2 / fan_in)``), ``lecun_normal``
(``sqrt(1 / fan_in)``), ``glorot_normal``, ``uniform_fan_in`` (uniform on
``+-1/sqrt(fan_in)``, PyTorch's default), ``zeros``, ``ones``, or a number (the std); for
convolutions also ``dirac_uniform`` (``uniform_fan_in`` with the first ``min(F, C)``
filters the identity, airbench94's) and ``patch_whitening`` (the first layer only, with
``filters = 2 * C * k * k``: the eigenvectors of the k x k patch covariance of the first
5000 training images and their negatives, scaled to whiten, eps 5e-4; computed from the
data before training by :meth:`nndl.network.Network.init_from_data`, which the Solver
calls, and usually with ``trainable: false``). See :mod:`nndl.nn.init`.

Today's default ``ConvNet`` (16-32-64 conv-BN-ReLU-pool, then a linear classifier whose
weights are drawn with std ``sqrt(1 / fan_in)``) is::

    [
        {"type": "conv_bn_relu_pool", "filters": 16},
        {"type": "conv_bn_relu_pool", "filters": 32},
        {"type": "conv_bn_relu_pool", "filters": 64},
        {"type": "linear", "units": 10, "init": "lecun_normal"}
    ]

with parameters ``block1.conv.W``, ``block1.conv.b``, ``block1.bn.gamma``,
``block1.bn.beta``, ..., ``fc1.W``, ``fc1.b``. A residual stage::

    {"type": "residual", "shortcut": "projection",
     "body": [{"type": "conv2d", "filters": 64, "bias": false}, "batchnorm2d", "relu",
              {"type": "conv2d", "filters": 64, "bias": false}, "batchnorm2d"]}

:class:`nndl.network.Network` builds a trainable model from such a spec.

Adding a layer type: decorate its class with :func:`register_layer` (which puts it in
:data:`LAYERS` under its ``type_name``), declare its ``flops``, and give it an ONNX
emitter, one small function in :data:`nndl.export.EMITTERS`; tests/test_layer_registry.py
fails for a registered layer missing any of them (CONTRIBUTING.md has the checklist).
"""

from .activations import GELU, ReLU
from .containers import Residual, Sequential
from .conv_blocks import (
    ConvBlock,
    ConvBNAct,
    ConvBNReLU,
    ConvBNReLUPool,
    ConvPoolBNAct,
    ConvReLU,
    ConvReLUPool,
)
from .init import INITS, patch_whitening_weights
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Linear
from .module import BufferSpec, Context, Module, ParamSpec, register_layer
from .norm import GroupNorm, LayerNorm
from .pooling import AvgPool2d, Flatten, GlobalAvgPool, GlobalMaxPool, MaxPool2d
from .spec import LAYERS, as_spec, build
from .summary import format_summary, summarize

__all__ = [
    "Module",
    "Context",
    "ParamSpec",
    "BufferSpec",
    "Conv2d",
    "Linear",
    "BatchNorm2d",
    "BatchNorm1d",
    "LayerNorm",
    "GroupNorm",
    "Dropout",
    "ReLU",
    "GELU",
    "MaxPool2d",
    "AvgPool2d",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "Flatten",
    "Sequential",
    "Residual",
    "ConvBlock",
    "ConvBNReLU",
    "ConvBNReLUPool",
    "ConvBNAct",
    "ConvPoolBNAct",
    "ConvReLU",
    "ConvReLUPool",
    "LAYERS",
    "register_layer",
    "build",
    "as_spec",
    "INITS",
    "patch_whitening_weights",
    "summarize",
    "format_summary",
]
