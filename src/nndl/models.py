"""The model registry: build any model by name from JSON-serialisable keyword arguments.

``build_model(model.name, **model.config)`` rebuilds a model's architecture (its weights
come from :func:`nndl.checkpoint.load_model`).
"""

from __future__ import annotations

import inspect
from typing import Any

from .cnn import ConvNet, ThreeLayerConvNet
from .fc_net import FullyConnectedNet, TwoLayerNet
from .model_base import Model
from .network import Network

MODELS: dict[str, type[Model]] = {
    "three_layer_convnet": ThreeLayerConvNet,
    "convnet": ConvNet,
    "fc_net": FullyConnectedNet,
    "two_layer_net": TwoLayerNet,
    "network": Network,
}


def model_kwargs(name: str) -> list[str]:
    """The keyword arguments the model registered as ``name`` accepts."""
    cls = _lookup(name)
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _lookup(name: str) -> type[Model]:
    if name not in MODELS:
        raise ValueError(f"build_model: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> Model:
    """Instantiate the model registered as ``name`` with ``kwargs``.

    An unknown name or keyword is a ``ValueError`` listing the valid ones.
    """
    cls = _lookup(name)
    valid = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"build_model: unknown keyword(s) {unknown} for model {name!r}; expected some of "
            f"{valid}"
        )
    return cls(**kwargs)
