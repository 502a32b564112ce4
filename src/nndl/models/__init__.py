"""Models: what they share (:mod:`.base`), the hand-written classic models
(:mod:`.fc_net`, :mod:`.cnn`), spec-built networks (:mod:`.network`), reading nndl 0.1.0's
files (:mod:`.legacy`) and the registry (:mod:`.registry`: ``MODELS``, ``build_model``,
``save_model``/``load_model``, ``pretrained()``), whose names this package offers.
"""

from .registry import (
    MODELS,
    PRETRAINED,
    build_model,
    load_model,
    model_entry,
    model_kwargs,
    pretrained,
    save_model,
)

__all__ = [
    "MODELS",
    "PRETRAINED",
    "build_model",
    "load_model",
    "model_entry",
    "model_kwargs",
    "pretrained",
    "save_model",
]
