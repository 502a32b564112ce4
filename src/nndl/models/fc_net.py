"""Fully connected networks: :class:`TwoLayerNet` and :class:`FullyConnectedNet`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..functional.linear import affine_backward, affine_forward
from ..functional.loss import softmax_loss
from ..validation import check_count
from .base import (
    ParamSpec,
    check_dims,
    check_dropout,
    check_weight_scale,
    normal_spec,
    zeros_spec,
)
from .classic import ClassicModel, batchnorm_specs


class TwoLayerNet(ClassicModel):
    """affine - relu - affine - softmax.

    Weights are normal with std ``weight_scale``, biases zero; params ``W1`` (D, H),
    ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,). Inputs of any shape ``(N, d_1, ..., d_k)``
    with ``D = d_1 * ... * d_k``.
    """

    name = "two_layer_net"

    def __init__(
        self,
        input_dim: int = 3 * 32 * 32,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float = 1e-3,
        reg: float = 0.0,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        plan = self._param_plan(self._arguments(locals()))  # checks every argument first
        self._setup(
            dict(
                input_dim=input_dim,
                hidden_dim=hidden_dim,
                num_classes=num_classes,
                weight_scale=weight_scale,
                reg=reg,
                seed=seed,
            ),
            reg,
            dtype,
            seed,
        )
        self._init_params(plan)

    @classmethod
    def _param_plan(cls, a: dict[str, Any]) -> dict[str, ParamSpec]:
        fn = cls.__name__
        D = check_count(fn, "input_dim", a["input_dim"], 1)
        H = check_count(fn, "hidden_dim", a["hidden_dim"], 1)
        C = check_count(fn, "num_classes", a["num_classes"], 1)
        std = check_weight_scale(fn, a["weight_scale"])
        return {
            "W1": normal_spec((D, H), std),
            "b1": zeros_spec(H),
            "W2": normal_spec((H, C), std),
            "b2": zeros_spec(C),
        }

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Scores (N, C) when ``y`` is None, else ``(loss, grads)``."""
        X, _ = self._begin(X, y)
        h, cache1 = self._hidden_forward(X, 1, False)
        scores, cache2 = affine_forward(h, self.params["W2"], self.params["b2"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dh, grads["W2"], grads["b2"] = affine_backward(dscores, cache2)
        self._hidden_backward(dh, cache1, 1, False, grads)
        return self._regularize(loss, grads, ("W1", "W2")), grads


class FullyConnectedNet(ClassicModel):
    """``{affine - [batch norm] - relu - [dropout]} x (L - 1) - affine - softmax``.

    ``hidden_dims`` lists the hidden layer sizes. ``dropout`` is the probability of
    KEEPING a unit (cs231n semantics; 0 means no dropout). As in cs231n, a ``seed``
    pins the dropout mask (``dropout_param['seed']``: the same mask on every call, which
    classic notebooks' gradient checks rely on) and seeds the initial weights; without a
    seed, weights and fresh masks come from NumPy's global random state. To train a
    seeded model with fresh masks (from its Generator ``model.rng``),
    ``del model.dropout_param['seed']``. Weights are normal with std
    ``weight_scale``, biases zero, ``gamma{i}`` one and ``beta{i}`` zero. Params are
    numbered by layer: ``W1, b1[, gamma1, beta1], ..., WL, bL``.
    """

    name = "fc_net"

    def __init__(
        self,
        hidden_dims: Sequence[int],
        input_dim: int = 3 * 32 * 32,
        num_classes: int = 10,
        dropout: float = 0,
        use_batchnorm: bool = False,
        reg: float = 0.0,
        weight_scale: float = 1e-2,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        plan = self._param_plan(self._arguments(locals()))  # checks every argument first
        hidden_dims = [int(h) for h in hidden_dims]
        self._setup(
            dict(
                hidden_dims=hidden_dims,
                input_dim=input_dim,
                num_classes=num_classes,
                dropout=dropout,
                use_batchnorm=use_batchnorm,
                reg=reg,
                weight_scale=weight_scale,
                seed=seed,
            ),
            reg,
            dtype,
            seed,
        )
        self.use_batchnorm = bool(use_batchnorm)
        self.num_layers = len(hidden_dims) + 1
        self._set_dropout(dropout)
        self.use_dropout = self.dropout_param is not None
        if self.use_dropout and seed is not None:
            self.dropout_param["seed"] = seed
        self._init_params(plan)

    @classmethod
    def _param_plan(cls, a: dict[str, Any]) -> dict[str, ParamSpec]:
        fn = cls.__name__
        hidden_dims = check_dims(fn, "hidden_dims", a["hidden_dims"])
        D = check_count(fn, "input_dim", a["input_dim"], 1)
        C = check_count(fn, "num_classes", a["num_classes"], 1)
        check_dropout(fn, a["dropout"])
        std = check_weight_scale(fn, a["weight_scale"])
        dims = [D, *hidden_dims, C]
        num_layers = len(dims) - 1
        plan: dict[str, ParamSpec] = {}
        for idx in range(1, num_layers + 1):
            plan[f"W{idx}"] = normal_spec((dims[idx - 1], dims[idx]), std)
            plan[f"b{idx}"] = zeros_spec(dims[idx])
            if a["use_batchnorm"] and idx < num_layers:
                plan.update(batchnorm_specs(idx, dims[idx]))
        return plan

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Scores (N, C) when ``y`` is None, else ``(loss, grads)``."""
        out, _ = self._begin(X, y)
        L = self.num_layers
        caches = []
        for idx in range(1, L):
            out, cache = self._hidden_forward(out, idx, self.use_batchnorm)
            out, drop_cache = self._dropout_forward(out)
            caches.append((cache, drop_cache))
        scores, last_cache = affine_forward(out, self.params[f"W{L}"], self.params[f"b{L}"])
        if y is None:
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dout, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, last_cache)
        for idx in range(L - 1, 0, -1):
            cache, drop_cache = caches[idx - 1]
            dout = self._dropout_backward(dout, drop_cache)
            dout = self._hidden_backward(dout, cache, idx, self.use_batchnorm, grads)
        return self._regularize(loss, grads, [f"W{i}" for i in range(1, L + 1)]), grads


__all__ = ["TwoLayerNet", "FullyConnectedNet"]
