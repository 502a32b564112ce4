"""The :class:`Module` base class, the :class:`Context` a pass runs in, and parameter specs.

A module holds hyperparameters only, never arrays: its parameters live in the model's
``params`` dict under ``<path>.<local name>`` (the Solver replaces entries of that dict
between steps, so a module looks them up at call time), its batch-norm statistics in the
model's ``buffers`` dict the same way, and its gradients go into ``ctx.grads``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..validation import BN_MODES

Shape = tuple[int, ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


ROLES = ("weight", "bias", "norm_scale", "norm_shift")
"""What a parameter is: a layer's weights, its bias, a normalisation's scale or shift."""

OLD_ROLES = {"bn_scale": "norm_scale", "bn_shift": "norm_shift"}
"""Role names of earlier releases, read as today's."""


@dataclass(frozen=True)
class ParamSpec:
    """What a module needs of one parameter.

    ``init`` is an initialiser name from :data:`nndl.nn.init.INITS` or a float (the
    standard deviation of a normal draw). ``decay``: L2 regularisation / weight decay
    applies (weights yes; biases and normalisation parameters no). ``role`` is one of
    :data:`ROLES` (``'weight'``, ``'bias'``, ``'norm_scale'``, ``'norm_shift'``: what the
    parameter is, for parameter groups and optimisers that treat them differently; the
    old names ``'bn_scale'``/``'bn_shift'`` are read as the new ones). A role says nothing
    about running statistics: those are a layer's declared buffers. ``trainable=False``
    marks a frozen parameter (its gradient is reported as zero). ``fan_in``/``fan_out``
    feed the initialisers.
    """

    shape: Shape
    init: str | float
    decay: bool
    role: str
    trainable: bool = True
    fan_in: int = 1
    fan_out: int = 1

    def __post_init__(self) -> None:
        role = OLD_ROLES.get(self.role, self.role)
        if role not in ROLES:
            raise ValueError(f"ParamSpec: expected role one of {ROLES}, got {self.role!r}")
        object.__setattr__(self, "role", role)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class BufferSpec:
    """A non-trained state array (batch-norm running statistics), filled with ``fill``."""

    shape: Shape
    fill: float


@dataclass
class Context:
    """Everything a forward/backward pass reads and writes besides the data.

    ``params``/``buffers`` are the model's dicts (keys are layer paths); ``grads`` the
    dict backward passes write into, or None for inference (then containers keep no
    caches, so activations are freed as the pass goes). ``mode`` is 'train' or 'test';
    ``rng`` the Generator dropout draws from. With ``need_input_grad`` False a layer's
    backward may skip dx and return None: the network sets it for its first layer, and
    a Sequential for the first layer after a frozen prefix (in the forward pass too, as
    the backward pass will set it, so a layer may leave out what only dx needs).
    Elementwise layers, pools, Residual, Conv2d and the fused conv blocks honour it;
    Linear and batch norm still compute dx (their functional backward always does).
    ``frozen`` names the parameters (model-level keys) whose gradients nobody reads in
    this pass, though they are trainable: a Solver's parameter groups that this step does
    not update. Containers treat a layer whose parameters are all in it as frozen, and
    Conv2d computes no filter gradient for a filter bank in it. With ``recompute`` the
    conv layers cache their input instead of its transformed copy (the Winograd tiles or
    im2col columns, 2.25-9x its size) and rebuild it in the backward pass: the same
    results in less memory, for a little more time.
    """

    params: Mapping[str, Any]
    buffers: MutableMapping[str, Any]
    grads: dict[str, Any] | None = None
    mode: str = "train"
    rng: np.random.Generator | None = None
    need_input_grad: bool = True
    frozen: frozenset[str] = field(default_factory=frozenset)
    recompute: bool = False

    def __post_init__(self) -> None:
        if self.mode not in BN_MODES:
            raise ValueError(f"Context: mode must be one of {BN_MODES}, got {self.mode!r}")


# --- argument checks for constructors (the spec builder prefixes the layer path) -----------


def check_name(name: Any) -> str | None:
    """A layer name is None (named automatically) or an identifier without dots."""
    if name is None:
        return None
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name: expected an identifier (letters, digits, '_', not starting with a "
            f"digit; no dots), got {name!r}"
        )
    return name


def assign_names(prefixes: list[str], names: list[str | None], where: str) -> list[str]:
    """Fill in missing names as ``<prefix><k>`` (conv1, bn1, conv2, ...), unique per level.

    Explicit names are kept (and must be unique); automatic ones skip names already taken.
    """
    taken: set[str] = set()
    for name in names:
        if name is not None:
            if name in taken:
                raise ValueError(f"{where}: two layers are named {name!r}; names must be unique")
            taken.add(name)
    counters: dict[str, int] = {}
    out = []
    for prefix, name in zip(prefixes, names, strict=True):
        if name is None:
            k = counters.get(prefix, 0)
            while True:
                k += 1
                if f"{prefix}{k}" not in taken:
                    break
            counters[prefix] = k
            name = f"{prefix}{k}"
            taken.add(name)
        out.append(name)
    return out


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Module:
    """A layer or a container of layers.

    Subclasses set ``type_name`` (the key in :data:`nndl.nn.LAYERS`) and ``prefix`` (for
    automatic names) and implement ``out_shape``, ``forward`` and ``backward``; layers with
    parameters also ``param_specs``, ``buffer_specs`` and ``flops``. Shapes given to and
    returned by ``out_shape``/``param_specs``/``flops`` are per example: ``(C, H, W)`` or
    ``(D,)``. ``flops`` counts the module's OWN forward operations per example (a
    multiply-add is 2), not its children's. :meth:`bind` fixes the path and the input
    shape once the tree is built.
    """

    type_name: ClassVar[str] = ""
    prefix: ClassVar[str] = "layer"
    allocates: ClassVar[bool] = True  # its output is a new array (False for views)

    def __init__(self, name: str | None = None) -> None:
        self.name = check_name(name)
        self.path = ""
        self.in_shape: Shape | None = None
        self.output_shape: Shape | None = None

    # --- tree -------------------------------------------------------------------------
    def children(self) -> list[Module]:
        return []

    def modules(self) -> Iterator[Module]:
        """This module and all below it, in tree (pre-)order."""
        yield self
        for child in self.children():
            yield from child.modules()

    def key(self, local: str) -> str:
        """The model-level key of this module's parameter or buffer ``local``."""
        return join(self.path, local)

    def error(self, message: str) -> ValueError:
        where = f"layer {self.path!r}" if self.path else "the network"
        return ValueError(f"{where} ({type(self).__name__}): {message}")

    def bind(self, in_shape: Shape, path: str = "") -> Shape:
        """Fix this module's path and input shape; return its output shape."""
        self.path = path
        self.in_shape = tuple(int(d) for d in in_shape)
        self.output_shape = self.out_shape(self.in_shape)
        return self.output_shape

    # --- shapes, parameters, cost -----------------------------------------------------
    def out_shape(self, in_shape: Shape) -> Shape:
        raise NotImplementedError

    def param_specs(self, in_shape: Shape) -> dict[str, ParamSpec]:
        return {}

    def buffer_specs(self, in_shape: Shape) -> dict[str, BufferSpec]:
        return {}

    def flops(self, in_shape: Shape) -> int:
        return 0

    def has_trainable_params(self, frozen: Collection[str] = ()) -> bool:
        """Whether this module or one below it has a trainable parameter whose key is not
        in ``frozen`` (bound trees)."""
        if self.in_shape is None:
            raise self.error("has_trainable_params needs a bound module (call bind first)")
        return any(spec.trainable and m.key(local) not in frozen for m in self.modules()
                   for local, spec in m.param_specs(m.in_shape).items())  # fmt: skip

    # --- passes -----------------------------------------------------------------------
    def forward(self, x, ctx: Context):
        """``(out, cache)`` for the batch ``x`` of shape ``(N, *in_shape)``."""
        raise NotImplementedError

    def backward(self, dout, cache, ctx: Context):
        """dx for ``dout`` of shape ``(N, *out_shape)``; parameter grads go to ctx.grads."""
        raise NotImplementedError

    # --- spec ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments besides ``name``, JSON-serialisable."""
        return {}

    def spec(self) -> dict[str, Any]:
        """The JSON spec this module is rebuilt from (every argument explicit)."""
        out: dict[str, Any] = {"type": self.type_name}
        if self.name is not None:
            out["name"] = self.name
        out.update(self.config())
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        name = f", name={self.name!r}" if self.name else ""
        return f"{type(self).__name__}({args}{name})"


LAYERS: dict[str, type[Module]] = {}
"""Layer type name (as written in a spec) -> class, filled by :func:`register_layer`."""


def register_layer(cls: type[Module]) -> type[Module]:
    """Class decorator: make ``cls`` buildable from a spec under ``cls.type_name``.

    A layer declares in its class what every part of nndl needs: ``type_name`` (the spec
    name), ``prefix``, ``out_shape``, ``param_specs``/``buffer_specs``, ``flops`` (its own
    forward cost, declared even when 0) and ``forward``/``backward``; the ONNX emitter
    sits in :data:`nndl.export.EMITTERS`. tests/test_layer_registry.py fails for a
    registered layer that lacks one of them.
    """
    name = cls.type_name
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_layer: {cls.__name__} has no type_name")
    taken = LAYERS.get(name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"register_layer: layer type {name!r} is already {taken.__module__}."
            f"{taken.__qualname__}; expected a new name for {cls.__qualname__}"
        )
    LAYERS[name] = cls
    return cls


def need_spatial(module: Module, in_shape: Shape) -> Shape:
    """Raise unless the per-example input is (C, H, W)."""
    if len(in_shape) != 3:
        raise module.error(
            f"expected a (C, H, W) input per example, got {in_shape}; spatial layers go "
            "before flatten/global pooling"
        )
    return in_shape


__all__ = [
    "Module", "Context", "ParamSpec", "BufferSpec", "Shape", "LAYERS", "register_layer",
    "ROLES", "OLD_ROLES",
]  # fmt: skip
