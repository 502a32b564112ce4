"""A run's model, planned from its settings before any data is loaded: the constructor
keywords of ``settings['model']`` (:func:`build_kwargs`) and their check against the
data shape and a size limit, without allocating anything (:func:`preflight`); the data
shape a run's ``--dataset`` implies before it is read (:func:`planned_input`).

Every model is built for its data: ``input_dim`` and ``num_classes`` come from the data
set, and an ``--arch`` spec written for CIFAR-10 (a preset's too: its last layer
``linear`` with 10 ``units``) gets the data's class count there (:func:`fit_head`); any
other mismatch is refused, as a spec's mistake."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..datasets import dataset_shape, is_named
from ..io.checkpoint import MAX_FILE_BYTES
from ..models import MODELS
from .errors import CLIError
from .flags import MODEL_FLAGS, MODEL_KWARGS, flag_name
from .recipe import check_combination

__all__ = ["MAX_PARAM_BYTES", "build_kwargs", "fit_head", "planned_input", "preflight"]

# A checkpoint holds about four copies of the parameters (the current and best ones and
# Adam's two moments) and must stay loadable (nndl.io.checkpoint.MAX_FILE_BYTES).
MAX_PARAM_BYTES = MAX_FILE_BYTES // 4


def _refuse(flag: str, name: str) -> CLIError:
    if name == "network":
        return CLIError(f"{flag_name(flag)} does not apply to --arch (the spec is the model)")
    return CLIError(f"{flag_name(flag)} does not apply to model {name}")


def planned_input(settings: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of ``settings['dataset']`` as far as they are known
    before it is read (:func:`nndl.datasets.dataset_shape`; checked again once it is)."""
    name = settings.get("dataset", "cifar10")
    found = dataset_shape(name, settings.get("image_size"), settings.get("channels"))
    if is_named(name):
        shape = found[0]
        size, channels = settings.get("image_size"), settings.get("channels")
        resized = size is not None and list(size) != list(shape[1:])
        if resized or channels not in (None, shape[0]):
            raise CLIError(
                f"--image-size and --channels apply to image folders; {name} images are "
                f"{shape[0]} x {shape[1]} x {shape[2]}"
            )
    if found is None:
        return (3, 32, 32), 10
    return found


CIFAR10_CLASSES = 10


def fit_head(spec: list, num_classes: int) -> list:
    """``spec`` with its last layer's ``units`` set to ``num_classes`` when that layer is
    a ``linear`` one with CIFAR-10's 10 units (a copy; the spec itself is not changed)."""
    last = spec[-1] if spec else None
    if isinstance(last, Mapping) and last.get("type") == "linear":
        if last.get("units") == CIFAR10_CLASSES and num_classes != CIFAR10_CLASSES:
            return [*spec[:-1], {**last, "units": num_classes}]
    return spec


def build_kwargs(
    settings: Mapping[str, Any],
    input_dim: Sequence[int],
    num_classes: int,
    explicit: Sequence[str] = (),
) -> dict[str, Any]:
    """Constructor keywords for ``settings['model']`` from the settings and the data shape.

    A model flag the model's constructor does not take is an error when it was given
    explicitly and is skipped otherwise.
    """
    name = settings["model"]
    params = inspect.signature(MODELS[name]).parameters
    kwargs: dict[str, Any] = {}
    for flag in MODEL_FLAGS:
        if flag not in settings:
            continue
        key = next((k for k in MODEL_KWARGS[flag] if k in params), None)
        if key is None:
            if flag in explicit:
                raise _refuse(flag, name)
            continue
        kwargs[key] = _model_value(name, flag, key, settings[flag], params[key].default)
    if isinstance(kwargs.get("layers"), list):
        kwargs["layers"] = fit_head(kwargs["layers"], num_classes)
    if "input_dim" in params:
        as_int = isinstance(params["input_dim"].default, (int, np.integer))
        kwargs["input_dim"] = int(np.prod(input_dim)) if as_int else tuple(input_dim)
    for key, value in (("num_classes", num_classes), ("dtype", np.dtype(settings["dtype"]).type),
                       ("seed", settings["seed"])):  # fmt: skip
        if key in params:
            kwargs[key] = value
    missing = [k for k, p in params.items()
               if p.default is inspect.Parameter.empty and k not in kwargs]  # fmt: skip
    if missing:
        needs = {"layers": "--arch FILE.json"}
        raise CLIError(
            f"model {name} needs {', '.join(needs.get(k, flag_name(k)) for k in missing)}"
        )
    return kwargs


def _model_value(name: str, flag: str, key: str, value: Any, default: Any) -> Any:
    """A list setting as the constructor takes it: one int, or a tuple."""
    if not isinstance(value, list) or key == "layers":
        return value
    if key == "hidden_dim" or isinstance(default, (int, np.integer)):
        if len(value) != 1:
            raise CLIError(f"model {name} takes one value for {flag_name(flag)}, got {value}")
        return value[0]
    return tuple(value)


def preflight(
    settings: Mapping[str, Any],
    explicit: Sequence[str] = (),
    input_dim: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Any]:
    """The model's keywords for ``settings``, checked (sizes included) before any data is
    loaded or memory spent: the model's parameter shapes are computed, not allocated."""
    check_combination(settings, flag_name)
    kwargs = build_kwargs(settings, input_dim, num_classes, explicit)
    size = min(input_dim[1:]) if len(input_dim) == 3 else None
    if size is not None and kwargs.get("filter_size", 1) > size:
        raise CLIError(
            f"--filter-size must be at most {size} (the images are "
            f"{input_dim[1]}x{input_dim[2]}), got {kwargs['filter_size']}"
        )
    name = settings["model"]
    try:
        shapes = MODELS[name].param_shapes(**kwargs)
    except (TypeError, ValueError) as exc:
        where = "--arch" if name == "network" else f"model {name}"
        raise CLIError(f"{where}: {exc}") from None
    count = sum(math.prod(shape) for shape in shapes.values())
    nbytes = count * np.dtype(settings["dtype"]).itemsize
    if nbytes > MAX_PARAM_BYTES:
        raise CLIError(
            f"model {name} would hold {count:,} parameters ({nbytes / 2**30:.1f} GiB); at "
            f"most {MAX_PARAM_BYTES / 2**30:.1f} GiB: use fewer --num-filters or --hidden-dims"
        )
    return kwargs
