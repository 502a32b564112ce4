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

from ..functional.dropout import dropout_backward, dropout_forward
from ..functional.sandwiches import (
    affine_batchnorm_relu_backward,
    affine_batchnorm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from ..nn.init import init_params
from ..nn.module import ParamSpec
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


def batchnorm_specs(idx: int, size: int) -> dict[str, ParamSpec]:
    """``gamma{idx}`` (ones; its layer also gets running statistics) and ``beta{idx}``."""
    return {
        f"gamma{idx}": ParamSpec((size,), "ones", False, "bn_scale"),
        f"beta{idx}": ParamSpec((size,), "zeros", False, "bn_shift"),
    }


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
        self.bn_params = []
        self.dropout_param: dict[str, Any] | None = None

    # --- construction helpers -------------------------------------------------------
    def _init_params(self, plan: dict[str, ParamSpec]) -> None:
        """Create the parameters of ``plan`` in its order (weights drawn in that order);
        every ``gamma{idx}`` (role ``bn_scale``) gets running statistics."""
        self.params = init_params(plan, self._draw, self.dtype, self._draw_uniform)
        for key, spec in plan.items():
            if spec.role == "bn_scale":
                self._add_bn_state(int(key.removeprefix("gamma")), spec.shape[0])

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

    def _add_bias(self, key: str, size: int) -> None:
        self.params[key] = np.zeros(size, dtype=self.dtype)

    def _add_batchnorm(self, idx: int, size: int) -> None:
        """Add ``gamma{idx}`` (ones), ``beta{idx}`` (zeros) and a bn_param.

        Running statistics start as mean 0, variance 1, so a model evaluated before any
        training step normalises with the identity instead of failing.
        """
        self.params[f"gamma{idx}"] = np.ones(size, dtype=self.dtype)
        self.params[f"beta{idx}"] = np.zeros(size, dtype=self.dtype)
        self._add_bn_state(idx, size)

    def _add_bn_state(self, idx: int, size: int) -> None:
        self.bn_params.append(
            {
                "mode": "train",
                "running_mean": np.zeros(size, dtype=self.dtype),
                "running_var": np.ones(size, dtype=self.dtype),
                "layer": idx,
            }
        )

    def _set_dropout(self, keep_prob: float) -> None:
        """cs231n semantics: ``keep_prob`` is the probability of keeping a unit; 0 or 1
        means no dropout."""
        keep_prob = check_dropout(type(self).__name__, keep_prob)
        if 0 < keep_prob < 1:
            self.dropout_param = {"mode": "train", "p": float(keep_prob)}

    # --- forward/backward helpers ---------------------------------------------------
    def _begin(self, X, y) -> tuple[Any, str]:
        """Cast X to the model's dtype and put batch norm and dropout in the right mode."""
        mode = "test" if y is None else "train"
        for bn_param in self.bn_params:
            bn_param["mode"] = mode
        if self.dropout_param is not None:
            self.dropout_param["mode"] = mode
        return X.astype(self.dtype, copy=False), mode

    def _bn_param(self, idx: int) -> dict[str, Any]:
        for bn_param in self.bn_params:
            if bn_param["layer"] == idx:
                return bn_param
        raise KeyError(f"{type(self).__name__}: no batch norm layer {idx}")

    def _hidden_forward(self, x, idx: int, use_batchnorm: bool):
        """affine - [batch norm] - relu with ``W{idx}, b{idx}[, gamma{idx}, beta{idx}]``."""
        p = self.params
        if use_batchnorm:
            return affine_batchnorm_relu_forward(
                x,
                p[f"W{idx}"],
                p[f"b{idx}"],
                p[f"gamma{idx}"],
                p[f"beta{idx}"],
                self._bn_param(idx),
            )
        return affine_relu_forward(x, p[f"W{idx}"], p[f"b{idx}"])

    def _hidden_backward(self, dout, cache, idx: int, use_batchnorm: bool, grads: dict):
        """Backward of :meth:`_hidden_forward`; stores the grads, returns dx."""
        if use_batchnorm:
            dx, dw, db, dgamma, dbeta = affine_batchnorm_relu_backward(dout, cache)
            grads[f"gamma{idx}"] = dgamma
            grads[f"beta{idx}"] = dbeta
        else:
            dx, dw, db = affine_relu_backward(dout, cache)
        grads[f"W{idx}"] = dw
        grads[f"b{idx}"] = db
        return dx

    def _dropout_forward(self, x):
        """Inverted dropout with masks from the model's Generator (identity if disabled).

        Without a Generator (``seed=None``) each mask comes from a Generator seeded by one
        draw from NumPy's global random state, so ``np.random.seed`` pins it while the
        layer itself never touches global state. Setting ``model.dropout_param['seed']``
        pins the mask (the same on every call), which gradient checks of a dropout model
        need.
        """
        dp = self.dropout_param
        if dp is None or dp["mode"] == "test":
            return x, None
        if "seed" not in dp:
            rng = self.rng
            if rng is None:
                rng = np.random.default_rng(np.random.randint(2**63, dtype=np.int64))
            dp = {**dp, "rng": rng}
        return dropout_forward(x, dp)

    @staticmethod
    def _dropout_backward(dout, cache):
        return dout if cache is None else dropout_backward(dout, cache)

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
        """Batch norm running statistics as ``running_mean{idx}`` / ``running_var{idx}``."""
        out = {}
        for bn_param in self.bn_params:
            idx = bn_param["layer"]
            out[f"running_mean{idx}"] = bn_param["running_mean"]
            out[f"running_var{idx}"] = bn_param["running_var"]
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` returned (copies, in the model's dtype)."""
        fn = f"{type(self).__name__}.load_state_arrays"
        expected = set(self.state_arrays())
        if set(arrays) != expected:
            raise ValueError(f"{fn}: expected keys {sorted(expected)}, got {sorted(arrays)}")
        for bn_param in self.bn_params:
            idx = bn_param["layer"]
            for stat in ("running_mean", "running_var"):
                value = np.asarray(arrays[f"{stat}{idx}"])
                if value.shape != bn_param[stat].shape:
                    raise ValueError(
                        f"{fn}: expected {stat}{idx} of shape {bn_param[stat].shape}, "
                        f"got {value.shape}"
                    )
                bn_param[stat] = value.astype(self.dtype, copy=True)

    def first_weights(self) -> np.ndarray | None:
        """The weights of the layer that sees the input (``W1``; for filter plots)."""
        return self.params.get("W1")

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
    "batchnorm_specs",
    "float_dtype",
    "check_dims",
    "check_dropout",
    "check_weight_scale",
]
