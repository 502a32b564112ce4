"""What every model shares: parameters, dtype, config, batch-norm and dropout plumbing.

A model holds ``params`` (name -> array in ``model.dtype``) and implements
``loss(X, y=None)``: class scores ``(N, C)`` when ``y`` is None (batch norm and dropout in
test mode), else ``(loss, grads)`` with ``grads`` keyed like ``params``. ``config`` holds
the JSON-serialisable constructor arguments and ``name`` the registry key, so
``nndl.models.build_model(model.name, **model.config)`` rebuilds the same architecture.

A model describes its parameters in one pure step, ``_param_plan`` (shape and initial
value of each), before anything is allocated: ``Model.param_shapes(**kwargs)`` gives the
shapes a constructor call would produce without building it, which is how a saved
model's config is checked against the arrays stored beside it before memory is spent.

Random draws: a model built with a ``seed`` owns a Generator (``model.rng``) for its
initial weights and dropout masks; with ``seed=None`` (the classic API) both come from
NumPy's global random state, so ``np.random.seed(231)`` makes a notebook repeatable.

State: :meth:`Model.state_dict` holds the parameters, the running statistics and the
Generator's state; :meth:`Model.load_state_dict` restores them. Files are written by
:func:`nndl.models.save_model` and read by :func:`nndl.models.load_model`.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..nn.init import init_params
from ..nn.module import BufferSpec, ParamSpec
from ..rng import rng_state, set_rng_state
from ..validation import check_count, check_real


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def float_dtype(fn: str, dtype: Any) -> np.dtype:
    """Return ``np.dtype(dtype)`` after checking it is a floating point type."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{fn}: expected a floating point dtype, got {dtype!r}") from exc
    if dt.kind != "f":
        raise TypeError(f"{fn}: expected a floating point dtype such as float32, got {dt}")
    return dt


def normal_spec(shape: Sequence[int], std: float) -> ParamSpec:
    """A weight drawn from a normal with std ``std`` (L2-regularised)."""
    shape = tuple(shape)
    return ParamSpec(shape, float(std), True, "weight")


def zeros_spec(size: int) -> ParamSpec:
    """A bias of ``size`` zeros (not regularised)."""
    return ParamSpec((size,), "zeros", False, "bias")


def check_dims(fn: str, name: str, value: Any, ndim: int | None = None) -> tuple[int, ...]:
    """A sequence of sizes (each an int >= 1) as a tuple; ``ndim`` fixes its length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{fn}: expected {name} to be a sequence of ints, got {value!r}")
    if ndim is not None and len(value) != ndim:
        raise ValueError(f"{fn}: expected {name} to hold {ndim} sizes, got {list(value)!r}")
    return tuple(check_count(fn, f"{name} entries", v, 1) for v in value)


def check_dropout(fn: str, keep_prob: Any) -> float:
    """The dropout keep probability in [0, 1] (0 or 1: no dropout)."""
    if isinstance(keep_prob, numbers.Real) and not isinstance(keep_prob, bool):
        if 0 <= keep_prob <= 1:
            return float(keep_prob)
    raise ValueError(
        f"{fn}: expected dropout (probability of keeping a unit) in [0, 1], "
        f"0 meaning no dropout; got {keep_prob!r}"
    )


def check_weight_scale(fn: str, weight_scale: Any) -> float:
    return check_real(fn, "weight_scale", weight_scale, 0, above=True)


def _arguments(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` bound to ``cls.__init__`` with its defaults filled in (no ``self``)."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop(next(iter(signature.parameters)))
    return args


class Model:
    """Base class: parameter storage, config, running statistics and the model's RNG.

    Subclasses implement :meth:`_param_plan` (pure: checks the arguments and returns every
    parameter's :class:`ParamSpec`), and their constructor calls :meth:`_setup`, then
    :meth:`_init_params` with the plan.
    """

    name: ClassVar[str] = ""

    params: dict[str, np.ndarray]
    bn_params: list[dict[str, Any]]
    dtype: np.dtype
    rng: np.random.Generator | None
    config: dict[str, Any]

    @classmethod
    def param_plan(cls, **kwargs: Any) -> dict[str, ParamSpec]:
        """The :class:`ParamSpec` of every parameter ``cls(**kwargs)`` would hold, in
        creation order, computed without allocating anything; bad arguments raise as the
        constructor would."""
        return cls._param_plan(_arguments(cls, kwargs))

    @classmethod
    def param_shapes(cls, **kwargs: Any) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter ``cls(**kwargs)`` would hold (see :meth:`param_plan`)."""
        return {k: spec.shape for k, spec in cls.param_plan(**kwargs).items()}

    @classmethod
    def buffer_plan(cls, **kwargs: Any) -> dict[str, BufferSpec]:
        """The :class:`BufferSpec` of every state array (running statistics) that
        ``cls(**kwargs)`` would hold, computed without allocating anything."""
        args = _arguments(cls, kwargs)
        return cls._buffer_plan_of(args, cls._param_plan(args))

    @classmethod
    def _buffer_plan_of(
        cls, args: dict[str, Any], plan: dict[str, ParamSpec]
    ) -> dict[str, BufferSpec]:
        """The buffers of the checked arguments ``args`` whose parameter plan is ``plan``."""
        raise NotImplementedError(f"{cls.__name__} does not implement _buffer_plan_of")

    @classmethod
    def _param_plan(cls, args: dict[str, Any]) -> dict[str, ParamSpec]:
        """Check the constructor arguments ``args`` (all of them, defaults filled in) and
        return the parameters' specs in creation order. Must not allocate arrays."""
        raise NotImplementedError(f"{cls.__name__} does not implement _param_plan")

    @staticmethod
    def _arguments(local_vars: dict[str, Any]) -> dict[str, Any]:
        """A constructor's arguments from ``locals()`` taken as its first statement."""
        return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}

    def _setup(self, config: dict[str, Any], reg: float, dtype: Any, seed: int | None) -> None:
        fn = type(self).__name__
        self.dtype = float_dtype(fn, dtype)
        self.reg = check_real(fn, "reg", reg, 0)
        if seed is not None:
            check_count(fn, "seed", seed, 0)
        cfg = {k: _jsonable(v) for k, v in config.items()}
        cfg["dtype"] = self.dtype.name
        self.config = cfg
        # With a seed the model's own Generator draws initial weights and dropout masks;
        # without one they come from NumPy's global random state, as in the classic API.
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.params = {}

    # --- construction helpers -------------------------------------------------------
    def _init_params(self, plan: dict[str, ParamSpec]) -> None:
        """Create the parameters of ``plan`` in its order (weights drawn in that order)."""
        self.params = init_params(plan, self._draw, self.dtype, self._draw_uniform)

    def _draw(self, key: str, shape: tuple[int, ...], std: float) -> np.ndarray:
        """Initial weights ``key``: a normal draw with std ``std``, in the model's dtype."""
        self._add_weight(key, shape, std)  # the one place models draw initial weights
        return self.params.pop(key)

    def _draw_uniform(self, key: str, shape: tuple[int, ...], bound: float) -> np.ndarray:
        """Initial weights ``key``: uniform on ``[-bound, bound]`` (float64, then cast)."""
        if self.rng is None:
            u = np.random.uniform(-bound, bound, shape)
        else:
            u = self.rng.uniform(-bound, bound, shape)
        return u.astype(self.dtype)

    def _standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.rng is None:
            return np.random.standard_normal(shape)  # the classic np.random.randn draws
        return self.rng.standard_normal(shape)

    def _add_weight(self, key: str, shape: tuple[int, ...], std: float) -> None:
        # Drawn in float64 and cast, so float32 and float64 models from one seed agree.
        self.params[key] = (self._standard_normal(shape) * std).astype(self.dtype)

    # --- forward/backward helpers ---------------------------------------------------
    def _regularize(self, loss: float, grads: dict, weights: Iterable[str]) -> float:
        """Add ``0.5 * reg * sum(W**2)`` to the loss and ``reg * W`` to each weight grad."""
        if self.reg == 0:
            return loss
        for key in weights:
            w = self.params[key]
            loss += 0.5 * self.reg * float(np.vdot(w, w))
            grads[key] += self.reg * w
        return loss

    # --- state ------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The model's non-trained state arrays (running statistics), by name."""
        raise NotImplementedError(f"{type(self).__name__} does not implement state_arrays")

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` returned (copies, in the model's dtype)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement load_state_arrays")

    def first_weights(self) -> np.ndarray | None:
        """The weights of the layer that sees the input (for filter plots), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes while the model trains, as copies:
        ``{"params": {...}, "buffers": {...}, "rng": state or None}``: the parameters, the
        running statistics (:meth:`state_arrays`) and the state of the model's Generator
        (None without a seed). :meth:`load_state_dict` restores it."""
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "buffers": {k: np.array(v, copy=True) for k, v in self.state_arrays().items()},
            "rng": None if self.rng is None else rng_state(self.rng),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result: the same names and shapes (arrays are cast
        to the model's dtype; ``rng`` may be absent or None, which keeps the model's own).

        Everything is checked before anything changes: a refused state (``ValueError``)
        leaves the model as it was.
        """
        fn = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping) or not {"params", "buffers"} <= set(state):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"{fn}: expected a dict with params, buffers and rng, got {got}")
        params = _float_arrays(fn, "params", state["params"], self.params)
        buffers = _float_arrays(fn, "buffers", state["buffers"], self.state_arrays())
        restored = None
        if state.get("rng") is not None and self.rng is not None:
            try:
                restored = set_rng_state(None, state["rng"])  # checked on a fresh one
            except ValueError as exc:
                raise ValueError(f"{fn}: bad rng state: {exc}") from None
        self.load_state_arrays(buffers)
        self.params = {k: np.array(params[k], dtype=self.dtype) for k in self.params}
        if restored is not None:
            self.rng = set_rng_state(self.rng, rng_state(restored))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def _float_arrays(fn: str, what: str, got: Any, expected: Mapping[str, np.ndarray]) -> dict:
    """``got`` checked to hold float arrays of exactly ``expected``'s names and shapes."""
    if not isinstance(got, Mapping) or set(got) != set(expected):
        names = sorted(got) if isinstance(got, Mapping) else type(got).__name__
        raise ValueError(f"{fn}: expected {what} {sorted(expected)}, got {names}")
    for k, v in got.items():
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            kind = v.dtype if isinstance(v, np.ndarray) else type(v).__name__
            raise ValueError(f"{fn}: expected {what} {k} to be a float array, got {kind}")
        if v.shape != expected[k].shape:
            raise ValueError(
                f"{fn}: expected {what} {k} of shape {expected[k].shape}, got {v.shape}"
            )
    return dict(got)


__all__ = [
    "Model",
    "normal_spec",
    "zeros_spec",
    "float_dtype",
    "check_dims",
    "check_dropout",
    "check_weight_scale",
]
