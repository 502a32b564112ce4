"""Containers: :class:`Sequential` and :class:`Residual` (the fused conv block, a
Sequential of its unfused layers, is :mod:`nndl.nn.conv_blocks`).

A :class:`Sequential` skips the backward pass of its leading layers when none of them
has a trainable parameter outside ``ctx.frozen`` and nobody needs its input's gradient
(a frozen patch-whitening conv and its activation, or airbench94_muon's whitening conv
once its bias has stopped training), and tells the first layer after them that its dx
is not needed.
"""

from __future__ import annotations

import math
from typing import Any

from ..functional.linear import add_backward, add_forward
from ..validation import output_size
from .layers import BatchNorm2d, Conv2d
from .module import Context, Module, Shape, assign_names, join, register_layer


@register_layer
class Sequential(Module):
    """Layers applied in order. Unnamed layers get ``<prefix><k>`` names (conv1, bn1,
    conv2, ...), unique within this container; their paths are ``<path>.<name>``."""

    type_name = "sequential"
    prefix = "seq"
    allocates = False  # its output is its last layer's

    def __init__(self, layers: list[Module], name: str | None = None) -> None:
        super().__init__(name)
        layers = list(layers)
        if not layers:
            raise ValueError("layers: expected at least one layer, got []")
        for layer in layers:
            if not isinstance(layer, Module):
                raise ValueError(f"layers: expected nndl.nn modules, got {type(layer).__name__}")
        names = assign_names([m.prefix for m in layers], [m.name for m in layers], "layers")
        for layer, name in zip(layers, names, strict=True):
            layer.name = name
        self.layers = layers
        self._trainable_flags: dict[frozenset[str], list[bool]] = {}

    def children(self) -> list[Module]:
        return self.layers

    def config(self) -> dict[str, Any]:
        return {"layers": [layer.spec() for layer in self.layers]}

    def bind(self, in_shape: Shape, path: str = "") -> Shape:
        self.path = path
        self.in_shape = shape = tuple(int(d) for d in in_shape)
        for layer in self.layers:
            shape = layer.bind(shape, join(path, layer.name))
        self.output_shape = shape
        self._trainable_flags = {}  # recomputed for the bound tree
        return shape

    def out_shape(self, in_shape: Shape) -> Shape:
        for layer in self.layers:
            in_shape = layer.out_shape(in_shape)
        return in_shape

    def flops(self, in_shape: Shape) -> int:
        return 0  # its own: none; its layers count theirs

    def _trainable(self, frozen: frozenset[str]) -> list[bool]:
        """Per layer: whether it has a trainable parameter outside ``frozen`` (one list
        per frozen set: a run sees a few)."""
        flags = self._trainable_flags.get(frozen)
        if flags is None:
            flags = [layer.has_trainable_params(frozen) for layer in self.layers]
            self._trainable_flags[frozen] = flags
        return flags

    def forward(self, x, ctx: Context):
        if ctx.grads is None:  # inference: let each activation go as soon as it is used
            for layer in self.layers:
                x, _ = layer.forward(x, ctx)
            return x, None
        caches = []
        need = ctx.need_input_grad
        trainable = self._trainable(ctx.frozen)
        try:
            for i, layer in enumerate(self.layers):
                below = any(trainable[:i])
                ctx.need_input_grad = need or below  # as the backward pass will set it
                x, cache = layer.forward(x, ctx)
                # A frozen leading layer whose dx nobody needs has no backward pass.
                caches.append(cache if need or below or trainable[i] else None)
        finally:
            ctx.need_input_grad = need
        return x, caches

    def backward(self, dout, cache, ctx: Context):
        """The layers' backward passes in reverse order; each layer's cache is released
        (set to None in ``cache``) once used, so memory falls as the pass goes."""
        need = ctx.need_input_grad
        trainable = self._trainable(ctx.frozen)
        try:
            for i in range(len(self.layers) - 1, -1, -1):
                below = any(trainable[:i])
                if not (need or below or trainable[i]):
                    return None  # no layer from here down has anything to learn
                # A layer's dx is needed if a layer before it learns, or by our caller.
                ctx.need_input_grad = need or below
                layer_cache, cache[i] = cache[i], None
                dout = self.layers[i].backward(dout, layer_cache, ctx)
                del layer_cache
        finally:
            ctx.need_input_grad = need
        return dout


SHORTCUTS = ("identity", "projection")


@register_layer
class Residual(Module):
    """``body(x) + shortcut(x)``; the gradients of both branches are summed.

    ``shortcut`` is ``'identity'`` (x itself: the body must keep the shape),
    ``'projection'`` (a 1x1 conv without bias to the body's channels with stride
    ``ceil(H / H_body)``, which must map the size exactly, then batch norm; built once
    the input shape is known),
    or a list of layers. A 1x1 conv with stride s maps H to ``1 + (H - 1) / s``, so
    halving an even size needs an explicit shortcut such as
    ``[{"type": "avgpool2d"}, {"type": "conv2d", "filters": F, "kernel_size": 1}, "batchnorm2d"]``.
    Children: ``body`` and (unless identity) ``shortcut``. FLOPs: one add per element.
    """

    type_name = "residual"
    prefix = "res"

    def __init__(
        self,
        body: Module | list[Module],
        shortcut: str | Module | list[Module] = "identity",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.body = _as_sequential(body, "body")
        if isinstance(shortcut, str):
            if shortcut not in SHORTCUTS:
                raise ValueError(
                    f"shortcut: expected one of {list(SHORTCUTS)} or a list of layers, "
                    f"got {shortcut!r}"
                )
            self.shortcut_kind = shortcut
            self.shortcut: Sequential | None = None
        else:
            self.shortcut_kind = "layers"
            self.shortcut = _as_sequential(shortcut, "shortcut")

    def children(self) -> list[Module]:
        return [self.body] if self.shortcut is None else [self.body, self.shortcut]

    def config(self) -> dict[str, Any]:
        if self.shortcut_kind == "layers":
            shortcut: Any = self.shortcut.config()["layers"]
        else:
            shortcut = self.shortcut_kind
        return {"body": self.body.config()["layers"], "shortcut": shortcut}

    def _projection(self, in_shape: Shape, out: Shape) -> Sequential:
        if len(in_shape) != 3 or len(out) != 3:
            raise self.error(
                f"a projection shortcut needs (C, H, W) shapes, got {in_shape} -> {out}"
            )
        # The stride that matches the size ratio; it must map H and W exactly.
        stride = -(-in_shape[1] // out[1])
        fits = (output_size(in_shape[1], 1, stride), output_size(in_shape[2], 1, stride)) == out[1:]
        if not fits:
            raise self.error(
                f"a 1x1 conv with stride {stride} does not map the input {in_shape} to the "
                f"body's output {out} (stride s gives 1 + (H - 1) / s); give the shortcut as "
                'a list of layers, e.g. [{"type": "avgpool2d"}, {"type": "conv2d", '
                f'"kernel_size": 1, "filters": {out[0]}}}, "batchnorm2d"]'
            )
        conv = Conv2d(out[0], kernel_size=1, stride=stride, pad=0, bias=False, name="conv")
        return Sequential([conv, BatchNorm2d(name="bn")], name="shortcut")

    def bind(self, in_shape: Shape, path: str = "") -> Shape:
        self.path = path
        self.in_shape = tuple(int(d) for d in in_shape)
        out = self.body.bind(self.in_shape, join(path, "body"))
        if self.shortcut_kind == "projection":
            self.shortcut = self._projection(self.in_shape, out)
        if self.shortcut is None:
            if out != self.in_shape:
                raise self.error(
                    f"an identity shortcut needs the body to keep the shape, but it maps "
                    f"{self.in_shape} to {out}; use shortcut 'projection' or a list of layers"
                )
        else:
            short = self.shortcut.bind(self.in_shape, join(path, "shortcut"))
            if short != out:
                raise self.error(
                    f"the shortcut maps {self.in_shape} to {short} but the body to {out}; "
                    "expected the same shape"
                )
        self.output_shape = out
        return out

    def out_shape(self, in_shape: Shape) -> Shape:
        return self.body.out_shape(in_shape)

    def flops(self, in_shape: Shape) -> int:
        return math.prod(self.out_shape(in_shape))

    def forward(self, x, ctx: Context):
        a, body_cache = self.body.forward(x, ctx)
        s, short_cache = (x, None) if self.shortcut is None else self.shortcut.forward(x, ctx)
        out, add_cache = add_forward(a, s)
        return out, (body_cache, short_cache, add_cache)

    def backward(self, dout, cache, ctx: Context):
        body_cache, short_cache, add_cache = cache
        da, ds = add_backward(dout, add_cache)
        dx = self.body.backward(da, body_cache, ctx)
        if self.shortcut is not None:
            ds = self.shortcut.backward(ds, short_cache, ctx)
        if not ctx.need_input_grad:
            return None
        return add_forward(dx, ds)[0]


def _as_sequential(layers: Module | list[Module], name: str) -> Sequential:
    if isinstance(layers, Sequential):
        layers.name = name
        return layers
    if isinstance(layers, Module):
        layers = [layers]
    return Sequential(layers, name=name)


__all__ = [
    "Sequential",
    "Residual",
]
