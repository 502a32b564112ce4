"""The hand-wired models of the classic notebooks (:class:`~nndl.models.fc_net.TwoLayerNet`,
:class:`~nndl.models.fc_net.FullyConnectedNet`, :class:`~nndl.models.cnn.ThreeLayerConvNet`):
numbered parameters (``W1, b1, gamma1, beta1, ...``), a ``bn_param`` dict per batch-norm
layer (``model.bn_params``) and one ``dropout_param``, as SPEC's models have them.

A classic model declares its parameters (``_param_plan``) and the running statistics of
its batch-norm layers (``_buffer_plan_of``: ``running_mean{idx}``/``running_var{idx}``, see
:func:`batchnorm_buffers`); the ``bn_param`` dicts come only from those declared buffers.
:class:`nndl.models.network.Network` models have none of this: their layers hold their
own buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional.dropout import dropout_backward, dropout_forward
from ..functional.sandwiches import (
    affine_batchnorm_relu_backward,
    affine_batchnorm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from ..nn.module import BufferSpec, ParamSpec
from .base import Model, check_dropout


def batchnorm_specs(idx: int, size: int) -> dict[str, ParamSpec]:
    """``gamma{idx}`` (ones) and ``beta{idx}`` (zeros) of batch-norm layer ``idx`` (its
    running statistics are :func:`batchnorm_buffers`)."""
    return {
        f"gamma{idx}": ParamSpec((size,), "ones", False, "norm_scale"),
        f"beta{idx}": ParamSpec((size,), "zeros", False, "norm_shift"),
    }


def batchnorm_buffers(idx: int, size: int) -> dict[str, BufferSpec]:
    """The running statistics of batch-norm layer ``idx``: ``running_mean{idx}`` (zeros)
    and ``running_var{idx}`` (ones), so a model evaluated before any training step
    normalises with the identity instead of failing."""
    return {
        f"running_mean{idx}": BufferSpec((size,), 0.0),
        f"running_var{idx}": BufferSpec((size,), 1.0),
    }


class ClassicModel(Model):
    """Base of the hand-wired models: ``bn_params``, ``dropout_param`` and the numbered
    affine - [batch norm] - relu helpers."""

    bn_params: list[dict[str, Any]]
    dropout_param: dict[str, Any] | None

    @classmethod
    def _buffer_plan_of(
        cls, args: dict[str, Any], plan: dict[str, ParamSpec]
    ) -> dict[str, BufferSpec]:
        """The running statistics of the parameter plan ``plan``: in SPEC's numbering
        ``gamma{idx}``/``beta{idx}`` are batch-norm layer ``idx``'s, which declares
        :func:`batchnorm_buffers` with them. A classic model with other layers overrides
        this."""
        out: dict[str, BufferSpec] = {}
        for key, spec in plan.items():
            if key.startswith("gamma") and key.removeprefix("gamma").isdigit():
                out.update(batchnorm_buffers(int(key.removeprefix("gamma")), spec.shape[0]))
        return out

    def _setup(self, config: dict[str, Any], reg: float, dtype: Any, seed: int | None) -> None:
        super()._setup(config, reg, dtype, seed)
        self.bn_params = []
        self.dropout_param = None

    def _init_params(self, plan: dict[str, ParamSpec]) -> None:
        """Create the parameters of ``plan`` and a ``bn_param`` for each batch-norm layer
        whose running statistics :meth:`_buffer_plan_of` declares."""
        super()._init_params(plan)
        buffers = self._buffer_plan_of(self.config, plan)
        for key, spec in buffers.items():
            if not key.startswith("running_mean"):
                continue
            idx = int(key.removeprefix("running_mean"))
            var = buffers[f"running_var{idx}"]
            self.bn_params.append(
                {
                    "mode": "train",
                    "running_mean": np.full(spec.shape, spec.fill, dtype=self.dtype),
                    "running_var": np.full(var.shape, var.fill, dtype=self.dtype),
                    "layer": idx,
                }
            )

    def _set_dropout(self, keep_prob: float) -> None:
        """cs231n semantics: ``keep_prob`` is the probability of keeping a unit; 0 or 1
        means no dropout."""
        keep_prob = check_dropout(type(self).__name__, keep_prob)
        if 0 < keep_prob < 1:
            self.dropout_param = {"mode": "train", "p": float(keep_prob)}

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


__all__ = ["ClassicModel", "batchnorm_specs", "batchnorm_buffers"]
