"""A model built from an architecture spec (:mod:`nndl.nn`): :class:`Network`.

It follows the protocol of every nndl model (``params``, ``loss(X, y=None)``, ``config``,
``name``), so the Solver trains it, ``build_model('network', **model.config)`` rebuilds
it, and ``nndl.models.save_model``/``load_model`` store it (batch-norm running
statistics through :meth:`Network.state_arrays`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..functional.loss import softmax_loss
from ..nn import BufferSpec, Context, Dropout, Module, ParamSpec, build, format_summary, summarize
from ..nn.init import PATCH_WHITENING_EPS, PATCH_WHITENING_IMAGES, init_params, resolve_init
from ..nn.init import patch_whitening_weights as _whitening
from ..nn.module import Shape
from ..nn.spec import as_spec
from ..validation import check_count, check_probability
from .base import Model


def _collect(root: Module, what: str) -> dict[str, Any]:
    """``{model key: spec}`` of every module's params or buffers, in tree order."""
    out = {}
    for module in root.modules():
        specs = getattr(module, what)(module.in_shape)
        out.update({module.key(local): spec for local, spec in specs.items()})
    return out


class Network(Model):
    """A classifier built from ``layers``, an architecture spec (see :mod:`nndl.nn`).

    ``input_dim`` is the per-example input shape; the spec's last layer must output
    ``(num_classes,)`` scores. The loss is softmax cross-entropy with optional
    ``label_smoothing``, plus ``0.5 * reg * sum(W**2)`` over the parameters whose spec
    says ``decay`` (weights; not biases or batch-norm parameters). Frozen parameters
    (``trainable=False``) get zero gradients, and so do the parameters named by
    :meth:`skip_grads` (whose gradients the caller will not read). Parameters are drawn
    in tree order by the model's :meth:`_add_weight` (float64, then cast), so float32
    and float64 networks from one seed agree. ``layers`` may also be :mod:`nndl.nn`
    modules; ``config`` holds the resolved spec (every name and argument explicit).

    Parameters with a data initialiser (``init: "patch_whitening"``, the first layer
    only) start as zeros and are listed in ``data_init_params`` until
    :meth:`init_from_data` computes them from training images (the Solver calls it
    before a fresh run) or a state is loaded; until then :meth:`loss` refuses to run.

    Attributes: ``root`` (the bound :class:`nndl.nn.Sequential`), ``param_specs``
    (key -> :class:`nndl.nn.ParamSpec`), ``buffers`` (key -> running statistics),
    ``data_init_params`` (keys still waiting for :meth:`init_from_data`), ``recompute``
    (False; True keeps less in memory during training: each conv layer caches its input
    and its backward pass rebuilds the transformed copy, with the same results).
    """

    name = "network"
    recompute: bool = False  # see the class docstring; the CLI's --recompute sets it

    def __init__(
        self,
        layers: Any,
        input_dim: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        reg: float = 0.0,
        label_smoothing: float = 0.0,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        root, in_shape, num_classes = self._bind(layers, input_dim, num_classes)
        label_smoothing = check_probability("Network", "label_smoothing", label_smoothing)
        config = dict(layers=root.config()["layers"], input_dim=list(in_shape),
                      num_classes=num_classes, reg=reg, label_smoothing=label_smoothing,
                      seed=seed)  # fmt: skip
        self._build(root, in_shape, config, reg, dtype, seed, label_smoothing)

    def _build(self, root: Module, in_shape: Shape, config: dict[str, Any], reg: float,
               dtype: Any, seed: int | None, label_smoothing: float = 0.0) -> None:  # fmt: skip
        """Set up a model around the bound tree ``root``; ``config`` rebuilds it."""
        self._setup(config, reg, dtype, seed)
        self.label_smoothing = label_smoothing
        self.root = root
        self.input_dim = in_shape
        self.param_specs: dict[str, ParamSpec] = _collect(root, "param_specs")
        self.buffers = {k: np.full(b.shape, b.fill, dtype=self.dtype)
                        for k, b in _collect(root, "buffer_specs").items()}  # fmt: skip
        self.params = init_params(self.param_specs, self._draw, self.dtype, self._draw_uniform)
        self.data_init_params = [k for k, s in self.param_specs.items()
                                 if resolve_init(s)[0] == "data"]  # fmt: skip
        self._decay = [k for k, s in self.param_specs.items() if s.decay and s.trainable]
        self._frozen = [k for k, s in self.param_specs.items() if not s.trainable]
        self._skip: frozenset[str] = frozenset()
        self._dropout = any(isinstance(m, Dropout) for m in root.modules())

    @staticmethod
    def _bind(layers: Any, input_dim: Any, num_classes: Any) -> tuple[Module, Shape, int]:
        """Build the spec's module tree and bind it to ``input_dim``: pure, no arrays."""
        fn = "Network"
        root = build(as_spec(layers))
        if isinstance(input_dim, (int, np.integer)) or not isinstance(input_dim, Sequence):
            raise ValueError(
                f"{fn}: expected input_dim as a list such as [3, 32, 32], got {input_dim!r}"
            )
        in_shape = tuple(check_count(fn, "input_dim entries", d, 1) for d in input_dim)
        num_classes = check_count(fn, "num_classes", num_classes, 1)
        out = root.bind(in_shape)
        _check_data_inits(root)
        if out != (num_classes,):
            raise ValueError(
                f"{fn}: the last layer outputs {out} per example; expected ({num_classes},) "
                f'scores for num_classes={num_classes} (end with {{"type": "linear", '
                f'"units": {num_classes}}})'
            )
        return root, in_shape, num_classes

    @classmethod
    def _param_plan(cls, args: dict[str, Any]) -> dict[str, ParamSpec]:
        """Every parameter the spec implies (checked, nothing allocated)."""
        root, _, _ = Network._bind(args["layers"], args["input_dim"], args["num_classes"])
        return _collect(root, "param_specs")

    @classmethod
    def _buffer_plan_of(
        cls, args: dict[str, Any], plan: dict[str, ParamSpec]
    ) -> dict[str, BufferSpec]:
        """The running statistics the layers declare (nothing allocated)."""
        root, _, _ = Network._bind(args["layers"], args["input_dim"], args["num_classes"])
        return _collect(root, "buffer_specs")

    def _rng(self, train: bool) -> np.random.Generator | None:
        """The Generator dropout draws from: the model's, or without a seed one seeded from
        NumPy's global random state (so ``np.random.seed`` makes the masks repeatable)."""
        if not (train and self._dropout) or self.rng is not None:
            return self.rng
        return np.random.default_rng(np.random.randint(2**63, dtype=np.int64))

    def _input(self, X) -> np.ndarray:
        if getattr(X, "ndim", 0) != len(self.input_dim) + 1 or X.shape[1:] != self.input_dim:
            raise ValueError(
                f"Network.loss: expected X of shape (N, {', '.join(map(str, self.input_dim))}), "
                f"got {getattr(X, 'shape', type(X).__name__)}"
            )
        return X.astype(self.dtype, copy=False)

    def init_from_data(self, X: np.ndarray) -> None:
        """Compute the data-initialised parameters (``data_init_params``) from training
        images ``X`` (N, *input_dim), as the network's input (already preprocessed):
        patch whitening uses the first :data:`~nndl.nn.init.PATCH_WHITENING_IMAGES`."""
        fn = "Network.init_from_data"
        if getattr(X, "ndim", 0) != len(self.input_dim) + 1 or X.shape[1:] != self.input_dim:
            raise ValueError(
                f"{fn}: expected X of shape (N, {', '.join(map(str, self.input_dim))}), "
                f"got {getattr(X, 'shape', type(X).__name__)}"
            )
        for key in self.data_init_params:
            k = self.param_specs[key].shape[2]
            W = _whitening(X[:PATCH_WHITENING_IMAGES], k, PATCH_WHITENING_EPS)
            self.params[key] = W.astype(self.dtype)
        self.data_init_params = []

    def load_state_dict(self, state: Any) -> None:
        super().load_state_dict(state)
        self.data_init_params = []  # the loaded parameters are the computed ones

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Scores (N, num_classes) when ``y`` is None (test mode), else ``(loss, grads)``."""
        if self.data_init_params:
            raise ValueError(
                f"Network.loss: {self.data_init_params} are initialised from data; call "
                "model.init_from_data(X_train) first (the Solver does so before training)"
            )
        X = self._input(X)
        train = y is not None
        ctx = Context(self.params, self.buffers, {} if train else None,
                      "train" if train else "test", self._rng(train),
                      need_input_grad=False, frozen=self._skip,
                      recompute=self.recompute)  # fmt: skip
        scores, cache = self.root.forward(X, ctx)
        if not train:
            return scores
        loss, dscores = softmax_loss(scores, y, label_smoothing=self.label_smoothing)
        self.root.backward(dscores, cache, ctx)
        grads = ctx.grads
        for key in self._skip:  # maybe not computed; the loss still counts its penalty
            grads.setdefault(key, np.zeros_like(self.params[key]))
        loss = self._regularize(loss, grads, self._decay)
        for key in (*self._frozen, *self._skip):
            grads[key] = np.zeros_like(self.params[key])
        return loss, grads

    def skip_grads(self, names: Iterable[str]) -> None:
        """Leave out the gradients of the parameters ``names`` in the training passes
        from now on (:meth:`loss` returns zeros for them; the loss is unchanged), until the
        next call; ``skip_grads(())`` computes them all again. The Solver passes the
        parameters each step leaves unchanged, so a layer that nothing upstream of it
        learns runs no backward pass (airbench94_muon's whitening conv once its bias
        stops training)."""
        names = frozenset(names)
        unknown = sorted(names - self.params.keys())
        if unknown:
            raise ValueError(
                f"Network.skip_grads: expected parameter names of this network "
                f"({sorted(self.params)}), got unknown {unknown}"
            )
        self._skip = names

    # --- state ------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Batch-norm running statistics keyed by path (``block1.bn.running_mean``)."""
        return dict(self.buffers)

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` returned (copies, in the model's dtype)."""
        fn = "Network.load_state_arrays"
        if set(arrays) != set(self.buffers):
            raise ValueError(f"{fn}: expected keys {sorted(self.buffers)}, got {sorted(arrays)}")
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.shape != self.buffers[key].shape:
                raise ValueError(
                    f"{fn}: expected {key} of shape {self.buffers[key].shape}, got {value.shape}"
                )
        self.buffers = {k: np.array(arrays[k], dtype=self.dtype) for k in self.buffers}

    def first_weights(self) -> np.ndarray | None:
        """The weights ``W`` of the first layer that has them (for filter plots)."""
        for module in self.root.modules():
            if "W" in module.param_specs(module.in_shape):
                return self.params[module.key("W")]
        return None

    # --- description ------------------------------------------------------------------
    def summary_data(self, batch_size: int = 1) -> dict[str, Any]:
        """Per-layer rows and totals (see :func:`nndl.nn.summarize`)."""
        batch_size = check_count("Network.summary", "batch_size", batch_size, 1)
        return summarize(self.root, self.dtype, batch_size)

    def summary(self, batch_size: int = 1) -> str:
        """A table: per layer its path, type, output shape, parameters and forward FLOPs;
        then total parameters (and their bytes), FLOPs per example, and the activation
        bytes for ``batch_size`` examples."""
        return format_summary(self.summary_data(batch_size))


def _check_data_inits(root: Module) -> None:
    """A data-initialised layer must be the first layer, which sees the input itself."""
    leaves = [m for m in root.modules() if not m.children()]
    for i, m in enumerate(leaves):
        specs = m.param_specs(m.in_shape)
        if i and any(resolve_init(s)[0] == "data" for s in specs.values()):
            raise m.error(
                "init 'patch_whitening' is for the network's first layer (it whitens the "
                "input images)"
            )


__all__ = ["Network"]
