"""What every model shares: parameters, dtype, config, batch-norm and dropout plumbing.

A model holds ``params`` (name -> array in ``model.dtype``) and implements
``loss(X, y=None)``: class scores ``(N, C)`` when ``y`` is None (batch norm and dropout in
test mode), else ``(loss, grads)`` with ``grads`` keyed like ``params``. ``config`` holds
the JSON-serialisable constructor arguments and ``name`` the registry key, so
``nndl.models.build_model(model.name, **model.config)`` rebuilds the same architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from .layer_utils import (
    affine_batchnorm_relu_backward,
    affine_batchnorm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from .layers import dropout_backward, dropout_forward


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


class Model:
    """Base class: parameter storage, config, running statistics and the model's RNG.

    Subclasses call :meth:`_setup` first, then add weights with :meth:`_add_weight` /
    :meth:`_add_bias` and batch norm layers with :meth:`_add_batchnorm`.
    """

    name: ClassVar[str] = ""

    params: dict[str, np.ndarray]
    bn_params: list[dict[str, Any]]
    dtype: np.dtype
    rng: np.random.Generator
    config: dict[str, Any]

    def _setup(self, config: dict[str, Any], reg: float, dtype: Any, seed: int | None) -> None:
        fn = type(self).__name__
        self.dtype = float_dtype(fn, dtype)
        if not np.isfinite(reg) or reg < 0:
            raise ValueError(f"{fn}: expected reg >= 0, got {reg!r}")
        self.reg = float(reg)
        cfg = {k: _jsonable(v) for k, v in config.items()}
        cfg["dtype"] = self.dtype.name
        self.config = cfg
        # The model's own Generator draws initial weights and dropout masks; NumPy's
        # global random state is never touched.
        self.rng = np.random.default_rng(seed)
        self.params = {}
        self.bn_params = []
        self.dropout_param: dict[str, Any] | None = None

    # --- construction helpers -------------------------------------------------------
    def _add_weight(self, key: str, shape: tuple[int, ...], std: float) -> None:
        # Drawn in float64 and cast, so float32 and float64 models from one seed agree.
        self.params[key] = (self.rng.standard_normal(shape) * std).astype(self.dtype)

    def _add_bias(self, key: str, size: int) -> None:
        self.params[key] = np.zeros(size, dtype=self.dtype)

    def _add_batchnorm(self, idx: int, size: int) -> None:
        """Add ``gamma{idx}`` (ones), ``beta{idx}`` (zeros) and a bn_param.

        Running statistics start as mean 0, variance 1, so a model evaluated before any
        training step normalises with the identity instead of failing.
        """
        self.params[f"gamma{idx}"] = np.ones(size, dtype=self.dtype)
        self.params[f"beta{idx}"] = np.zeros(size, dtype=self.dtype)
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
        fn = type(self).__name__
        if not 0 <= keep_prob <= 1:
            raise ValueError(
                f"{fn}: expected dropout (probability of keeping a unit) in [0, 1], "
                f"0 meaning no dropout; got {keep_prob!r}"
            )
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

        Setting ``model.dropout_param['seed']`` pins the mask (the same on every call),
        which gradient checks of a dropout model need.
        """
        dp = self.dropout_param
        if dp is None or dp["mode"] == "test":
            return x, None
        if "seed" not in dp:
            dp = {**dp, "rng": self.rng}
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

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """Copies of the parameters and the running statistics:
        ``{"params": {...}, "state": {...}}`` (see :meth:`load_state_dict`)."""
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "state": {k: np.array(v, copy=True) for k, v in self.state_arrays().items()},
        }

    def load_state_dict(self, state: dict[str, dict[str, np.ndarray]]) -> None:
        """Restore :meth:`state_dict`'s result (same keys and shapes; cast to the dtype)."""
        fn = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict) or set(state) != {"params", "state"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{fn}: expected a dict with keys ['params', 'state'], got {got}")
        params = state["params"]
        if set(params) != set(self.params):
            raise ValueError(f"{fn}: expected params {sorted(self.params)}, got {sorted(params)}")
        for k, v in params.items():
            if np.shape(v) != self.params[k].shape:
                raise ValueError(
                    f"{fn}: expected {k} of shape {self.params[k].shape}, got {np.shape(v)}"
                )
        self.load_state_arrays(state["state"])
        self.params = {k: np.array(params[k], dtype=self.dtype) for k in self.params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
