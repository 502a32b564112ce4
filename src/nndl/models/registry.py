"""The model registry, and saving and loading models as files.

``build_model(name, **kwargs)`` builds any registered model from JSON-serialisable
keyword arguments, so ``build_model(model.name, **model.config)`` rebuilds a model's
architecture. :func:`save_model` writes a model (its name, config and
:meth:`~nndl.models.base.Model.state_dict`) in the nndl file format
(:mod:`nndl.io.checkpoint`); :func:`load_model` rebuilds it, after checking that the
stored config implies exactly the stored parameter shapes (so a crafted file cannot
make it allocate more than the file holds). Files of nndl 0.1.0 load too
(:mod:`nndl.models.legacy`). :func:`pretrained` loads a model shipped inside the package.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..io.checkpoint import CorruptFileError, check_shapes, read_tree, save_tree
from ..validation import NonFiniteError, check_finite
from .base import Model
from .cnn import ConvNet, ThreeLayerConvNet
from .fc_net import FullyConnectedNet, TwoLayerNet
from .legacy import upgrade
from .network import Network

__all__ = [
    "MODELS",
    "PRETRAINED",
    "build_model",
    "model_kwargs",
    "model_entry",
    "save_model",
    "load_model",
    "pretrained",
]

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


# --- files ------------------------------------------------------------------------------


def model_entry(model: Model, params: Mapping[str, np.ndarray] | None = None) -> dict:
    """What a file holds of ``model``: ``name``, ``config`` and its state dict (with
    ``params`` instead of the model's own when given)."""
    state = model.state_dict()
    if params is not None:
        state["params"] = {k: np.array(v, copy=True) for k, v in params.items()}
    return {"name": model.name, "config": model.config, **state}


def save_model(path: str | os.PathLike, model: Model, extra: dict | None = None) -> Path:
    """Save ``model`` (name, config, parameters, running statistics, RNG state) and the
    JSON-serialisable ``extra`` (for example class names or the epoch) to ``path``."""
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"save_model: expected extra to be a dict, got {type(extra).__name__}")
    return save_tree(path, {"kind": "model", "model": model_entry(model), "extra": extra})


def _entry(where: str, tree: Mapping[str, Any]) -> dict[str, Any]:
    """The stored model entry, its name, config and extra checked."""
    entry = tree.get("model")
    if not isinstance(entry, Mapping):
        raise CorruptFileError(f"{where} holds no model")
    name, config = entry.get("name"), entry.get("config")
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"{where} names the model {name!r}; expected one of {sorted(MODELS)}")
    if not isinstance(config, Mapping):
        raise CorruptFileError(f"{where} holds a model config that is not a dict")
    extra = tree.get("extra")
    if extra is not None and not isinstance(extra, Mapping):
        raise CorruptFileError(f"{where} holds an 'extra' that is not a dict")
    return dict(entry)


def _check_plan(where: str, entry: Mapping[str, Any]) -> None:
    """Refuse unless the config implies exactly the stored parameter shapes."""
    name = entry["name"]
    try:
        planned = MODELS[name].param_shapes(**entry["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} holds an invalid {name} config: {exc}") from None
    check_shapes(where, "params", entry.get("params"), planned)


def _check_finite_arrays(where: str, entry: Mapping[str, Any]) -> None:
    hint = (
        " (such a model predicts nan; load_model(..., allow_nonfinite=True), on the command "
        "line --allow-nonfinite, loads it anyway to inspect it)"
    )
    for group, what in (("params", "parameter"), ("buffers", "running statistic")):
        arrays = entry.get(group)
        for name, value in arrays.items() if isinstance(arrays, Mapping) else ():
            try:
                check_finite(where, f"{what} {name!r}", value)
            except NonFiniteError as exc:
                raise NonFiniteError(f"{exc}{hint}") from None


def _build(where: str, name: str, config: Mapping[str, Any]) -> Model:
    # Building draws initial weights (from the global random state without a seed) that
    # the stored ones replace; loading a model must not disturb a notebook's random state.
    global_state = np.random.get_state()
    try:
        return build_model(name, **config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} holds an invalid {name} config: {exc}") from None
    finally:
        np.random.set_state(global_state)


def load_model(
    path: str | os.PathLike, *, allow_nonfinite: bool = False
) -> tuple[Model, dict | None]:
    """Rebuild a model saved by :func:`save_model` (or from a Solver checkpoint, the
    parameters training would continue from); returns ``(model, extra)``.

    A truncated or corrupt file, or one whose config does not match its arrays, is a
    ``ValueError`` naming it; nothing larger than the file's arrays is allocated. A NaN or
    infinite weight or running statistic is a :class:`nndl.validation.NonFiniteError` (a
    ``ValueError``) naming the array, since such a model predicts nan for every input;
    ``allow_nonfinite=True`` loads it anyway, to inspect it.
    """
    fn = "load_model"
    where = f"{fn}: {path}"

    def check(outline: dict[str, Any]) -> None:  # before any array is read
        _check_plan(where, _entry(where, upgrade(outline)))

    tree = upgrade(read_tree(fn, path, check))
    entry = _entry(where, tree)
    if not allow_nonfinite:
        _check_finite_arrays(where, entry)
    model = _build(where, entry["name"], entry["config"])
    try:
        model.load_state_dict(entry)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    extra = tree.get("extra")
    return model, None if extra is None else dict(extra)


# --- models shipped with nndl ---------------------------------------------------------

PRETRAINED: dict[str, str] = {"default": "default.npz"}
"""Models shipped inside the package (``nndl/models/weights/``), by name. Each file is a
:func:`save_model` file whose extra holds the preprocessing, the test accuracy and the
command that produced it (``tools/make_pretrained.py``; see the README)."""


def pretrained(name: str = "default") -> tuple[Model, dict[str, Any]]:
    """A model trained by nndl and shipped inside the package: no training, no download.

    Returns ``(model, info)``. ``info['preprocess']`` is what
    :func:`nndl.data.apply_preprocess` takes (``mean_image`` (C, H, W), ``class_names``,
    ``dtype`` and, with per-channel normalisation, ``mean`` and ``std``);
    ``info['test_accuracy']`` its accuracy on ``info['num_test']`` CIFAR-10 test images;
    ``info['command']`` the commands that produced it.
    """
    if name not in PRETRAINED:
        raise ValueError(
            f"pretrained: unknown model {name!r}; expected one of {sorted(PRETRAINED)}"
        )
    ref = resources.files("nndl.models") / "weights" / PRETRAINED[name]
    with resources.as_file(ref) as path:
        model, info = load_model(path)
    if info is None or not isinstance(info.get("preprocess"), Mapping):
        raise CorruptFileError(f"pretrained: {ref} holds no preprocessing")
    return model, info
