"""Minibatch training of any model with ``params`` and ``loss(X, y=None)``.

Example::

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    lr_decay=0.95, batch_size=50, num_epochs=10, seed=0)
    solver.train()
    solver.best_val_acc, solver.loss_history

The modern extras, all off by default (SPEC's Solver is unchanged without them)::

    Solver(model, data, update_rule="sgdw", optim_config={"learning_rate": 0.1},
           schedule={"name": "triangular"},                       # per iteration
           param_groups=[{"params": "*.beta", "lr_mult": 64.0}],  # nndl.optim
           ema={"decay": 0.99, "every": 5},                       # evaluated with it
           augment=[{"name": "random_crop", "pad": 2}, "alternating_flip"])
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io.checkpoint import save_tree
from ..optim import get_update_rule
from ..rng import rng_state
from . import state as checks
from .augment import make_augmentation
from .callbacks import Callback, PrintProgress
from .interrupts import StepBoundaryInterrupts
from .loader import BatchLoader
from .schedules import make_schedule
from .setup import (
    ParamPlan,
    check_ema_spec,
    check_options,
    ema_applied,
    ema_step,
    make_ema,
    positive_int,
    step_loss,
)

__all__ = ["Solver"]


class Solver:
    """Train ``model`` on ``data`` (a dict with ``X_train, y_train, X_val, y_val``).

    ``train()`` runs ``max(N // batch_size, 1) * num_epochs`` iterations; each epoch visits
    a fresh permutation of the training set drawn from the solver's Generator (seeded by
    ``seed``; without one, by a draw from NumPy's global random state, so that
    ``np.random.seed`` makes a run repeatable). After each epoch every parameter's
    learning rate is multiplied by ``lr_decay``, and the accuracies are checked (train on
    ``num_train_samples`` examples, validation on ``num_val_samples`` or all); they are
    also checked at the start.
    ``best_params`` (copies) are those of the best validation accuracy and are swapped
    into the model when training finishes. ``update_rule`` is a name in
    :data:`nndl.optim.UPDATE_RULES` or a callable ``(w, dw, config) -> (next_w, config)``;
    ``optim_config`` is copied for every parameter (``optim_configs[name]``). With
    ``verbose`` a :class:`~nndl.callbacks.PrintProgress` prints the classic lines.
    ``callbacks`` are called in list order (see :mod:`nndl.callbacks`);
    ``checkpoint_name`` saves ``f"{checkpoint_name}_epoch_{epoch}.npz"`` after each epoch.

    The extras (details in :mod:`nndl.train.setup`): ``schedule`` (:mod:`nndl.schedules`)
    sets the learning rates before every update (exclusive with ``lr_decay``, the
    schedule ``{"name": "exponential", "gamma": lr_decay}`` applied the classic way, at
    each epoch end); ``param_groups`` (:func:`nndl.optim.resolve_param_groups`) give
    parameters a learning-rate multiplier, a weight decay, or freeze them (as are the
    ones a model marks untrainable); ``ema`` keeps an average of the weights (component
    ``"ema"``) that accuracy checks and ``best_params`` use; ``augment`` (a pipeline of
    :mod:`nndl.augment`) draws batches from a background :class:`~nndl.train.loader.BatchLoader`
    (component ``"loader"``) instead of SPEC's shuffle. An empty validation set makes
    validation accuracies NaN and ``best_params`` the latest; a model's
    ``init_from_data(X_train)`` runs when a fresh run starts if it has
    ``data_init_params``.

    Attributes: ``epoch``, ``iteration`` (completed updates), ``num_iterations``,
    ``iterations_per_epoch``, ``loss_history``, ``train_acc_history``, ``val_acc_history``
    (entry 0 is the check at the start), ``best_val_acc``, ``best_params``,
    ``optim_configs``, ``stop_training``, ``stop_reason``, ``components``, ``schedule``
    (a :class:`nndl.schedules.Schedule` or None), ``ema`` and ``loader`` (or None), and
    ``learning_rate`` (the base rate times the schedule's multiplier of the latest step).

    State: :meth:`state_dict` holds everything a run continues from (the model's state,
    counters, histories, best parameters, the update rules' state, the Generator and the
    current shuffle; see :mod:`nndl.train.state`), and :meth:`load_state_dict` restores
    it, so training continues bit-identically. ``components`` maps a name to any object
    with ``state_dict()``/``load_state_dict()`` (a data loader, a learning-rate schedule,
    an EMA of the weights) whose state is saved and restored with the solver's.
    :meth:`save_checkpoint`/:meth:`load_checkpoint` do the same through a file.
    """

    def __init__(self, model: Any, data: Mapping[str, Any], **kwargs: Any) -> None:
        opts = check_options(model, data, kwargs)
        self.model = model
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]
        rule = opts["update_rule"]
        self.update_rule = get_update_rule(rule)
        self.update_rule_name: str | None = rule if isinstance(rule, str) else None
        self.optim_config = dict(opts["optim_config"] or {})
        self.lr_decay = opts["lr_decay"]
        self.batch_size, self.num_epochs = opts["batch_size"], opts["num_epochs"]
        self.num_train_samples = opts["num_train_samples"]
        self.num_val_samples = opts["num_val_samples"]
        self.checkpoint_name = opts["checkpoint_name"]
        self.print_every = opts["print_every"]
        self.verbose = bool(opts["verbose"])
        seed = opts["seed"]
        if seed is None:
            # As the classic Solver drew batches from np.random, np.random.seed makes an
            # unseeded run repeatable; the solver keeps its own (checkpointed) Generator.
            seed = np.random.randint(2**63, dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self._setup_extras(opts)

        callbacks = list(opts["callbacks"] or [])
        if self.verbose and not any(isinstance(cb, PrintProgress) for cb in callbacks):
            callbacks.insert(0, PrintProgress(self.print_every))
        self.callbacks: list[Callback] = callbacks

        self.iterations_per_epoch = max(len(self.X_train) // self.batch_size, 1)
        self.num_iterations = self.iterations_per_epoch * self.num_epochs
        self._reset()

    def _setup_extras(self, opts: dict[str, Any]) -> None:
        """The schedule, parameter groups, EMA and loader (see :mod:`nndl.train.setup`)."""
        try:
            self.schedule = None if opts["schedule"] is None else make_schedule(opts["schedule"])
            augment = None if opts["augment"] is None else make_augmentation(opts["augment"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Solver: {exc}") from None
        if self.schedule is not None and self.lr_decay != 1.0:
            raise ValueError(
                "Solver: give lr_decay or schedule, not both (lr_decay is the schedule "
                f"{{'name': 'exponential', 'gamma': {self.lr_decay}}})"
            )
        self.plan = ParamPlan(self.model, self.optim_config, self.update_rule_name,
                              opts["param_groups"], self.schedule, self.update_rule)  # fmt: skip
        self.learning_rate = self.optim_config.get("learning_rate")
        self.ema_spec = check_ema_spec("Solver", opts["ema"])
        self.ema = None if self.ema_spec is None else make_ema(self.ema_spec)
        self.loader: BatchLoader | None = None
        if augment is not None:
            seed = int(self.rng.integers(2**63))  # only when asked: SPEC's draws stay as they were
            self.loader = BatchLoader(self.X_train, self.y_train, self.batch_size,
                                      augment=augment, seed=seed)  # fmt: skip
        self.components: dict[str, Any] = {}
        for name, component in (("loader", self.loader), ("ema", self.ema)):
            if component is not None:
                self.components[name] = component

    def _reset(self) -> None:
        """Set up the bookkeeping of a fresh run."""
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = 0.0
        self.best_params: dict[str, np.ndarray] = {}
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        # The Solver owns the parameters, so the rules may update them in place.
        self.optim_configs = self.plan.initial_configs(self.optim_config)
        self.stop_training = False
        self.stop_reason: str | None = None
        self._perm: np.ndarray | None = None
        # After train() the model holds the best params; these are the ones training
        # continues from (and that a checkpoint saves).
        self._last_params: dict[str, np.ndarray] | None = None

    def training_params(self) -> dict[str, np.ndarray]:
        """The parameters training continues from (the model's, until train() returns)."""
        return self.model.params if self._last_params is None else self._last_params

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(self, *args)

    # --- training ---------------------------------------------------------------------
    def _step(self, X: np.ndarray, y: np.ndarray) -> float | None:
        """One update on the minibatch; None (and no update) if the loss is not finite."""
        params, plan = self.model.params, self.plan
        factor = plan.multiplier(self.iteration, self.num_iterations, self.iterations_per_epoch)
        updates = list(plan.updates(self.iteration, factor, self.iterations_per_epoch))
        loss, grads = step_loss(self.model, X, y, {p for p, _ in updates})
        loss = float(loss)
        if not math.isfinite(loss):
            self.stop_reason = (
                f"Solver: non-finite loss {loss} at iteration {self.iteration + 1}; training "
                f"stopped, the best params so far (val_acc {self.best_val_acc:f}) are kept"
            )
            warnings.warn(self.stop_reason, RuntimeWarning, stacklevel=3)
            if self.verbose:
                print(self.stop_reason)
            return None
        self.loss_history.append(loss)
        if plan.schedule is not None:
            self.learning_rate = self.optim_config.get("learning_rate", 1.0) * factor
        for p, mult in updates:
            config = self.optim_configs[p]
            if plan.schedule is not None:
                config["learning_rate"] = plan.learning_rate(p, mult)
            params[p], self.optim_configs[p] = plan.rule[p](params[p], grads[p], config)
        if self.ema is not None:
            ema_step(self.ema, self.ema_spec, self.model, self.iteration + 1, self.num_iterations)
        return loss

    def averaged(self) -> Any:
        """A context in which the model holds the EMA's averages (a no-op without an EMA):
        the weights every accuracy check and ``best_params`` use."""
        return ema_applied(self.ema, self.ema_spec, self.model)

    def _batches(self, N: int, ipe: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The minibatches of the iterations still to run: the loader's (augmented, in a
        background thread) or SPEC's shuffle, drawn from the solver's Generator as each
        epoch starts."""
        if self.loader is not None:
            start = {"seed": self.loader.seed, "epoch": self.iteration // ipe,
                     "position": self.iteration % ipe}  # fmt: skip
            self.loader.load_state_dict(start)  # the solver's counter is the truth
            yield from self.loader.iterate(self.num_iterations - self.iteration)
            return
        while True:
            pos = self.iteration % ipe
            if pos == 0 or self._perm is None:
                self._perm = self.rng.permutation(N)
            idx = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
            yield self.X_train[idx], self.y_train[idx]

    def _iteration(self, batches: Iterator, ipe: int, started: float) -> bool:
        """One step, its callbacks and any epoch end; False if the loss was not finite."""
        loss = self._step(*next(batches))
        if loss is None:
            return False
        self.iteration += 1
        self._call("on_iteration_end", self.iteration, loss)
        if self.iteration % ipe == 0:
            self._end_epoch(started)
        return True

    def _record_accuracy(self) -> tuple[float, float]:
        with self.averaged():
            train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
            val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
            self.train_acc_history.append(train_acc)
            self.val_acc_history.append(val_acc)
            # Without a validation set (NaN) the best parameters are the latest.
            if val_acc > self.best_val_acc or not self.best_params or math.isnan(val_acc):
                self.best_val_acc = val_acc
                self.best_params = {k: v.copy() for k, v in self.model.params.items()}
        return train_acc, val_acc

    def _end_epoch(self, started: float) -> None:
        self.epoch += 1
        configs = list(self.optim_configs.values())
        lr = configs[0].get("learning_rate") if configs else None
        if self.schedule is not None:
            lr = self.learning_rate  # the frozen first parameter's config is never set
        for config in configs:
            if "learning_rate" in config:
                config["learning_rate"] *= self.lr_decay
        if self.schedule is None and self.learning_rate is not None:
            self.learning_rate *= self.lr_decay
        train_acc, val_acc = self._record_accuracy()
        ipe = self.iterations_per_epoch
        losses = self.loss_history[(self.epoch - 1) * ipe : self.epoch * ipe]
        logs = {
            "train_acc": train_acc,
            "val_acc": val_acc,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": lr,
            "elapsed": time.perf_counter() - started,
            "best_val_acc": self.best_val_acc,
        }
        if self.checkpoint_name is not None:
            self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.npz")
        self._call("on_epoch_end", self.epoch, logs)

    def train(self) -> None:
        """Run (or, after a stop or :meth:`load_checkpoint`, continue) the training.

        Ctrl-C (in the main thread) takes effect between steps: ``KeyboardInterrupt`` is
        raised with the solver and model exactly as of the last finished step (its
        callbacks and any epoch end included), so a checkpoint saved then resumes exactly.
        SIGTERM (where the program has not installed its own handler) is held the same
        way and raises :class:`nndl.train.interrupts.Terminated`, a KeyboardInterrupt subclass:
        ``except KeyboardInterrupt`` saving a checkpoint covers both (see
        :class:`nndl.train.interrupts.StepBoundaryInterrupts`).
        """
        started = time.perf_counter()
        N = len(self.X_train)
        ipe = self.iterations_per_epoch = max(N // self.batch_size, 1)
        self.num_iterations = ipe * self.num_epochs
        self.stop_training = False
        self.stop_reason = None
        if self._last_params is not None:
            self.model.params = self._last_params
            self._last_params = None
        with StepBoundaryInterrupts() as interrupts:
            if self.iteration == 0 and not self.val_acc_history:
                if getattr(self.model, "data_init_params", None):
                    self.model.init_from_data(self.X_train)
                self._record_accuracy()
            self._call("on_train_begin")
            interrupts.check()
            with contextlib.closing(self._batches(N, ipe)) as batches:
                while self.iteration < self.num_iterations and not self.stop_training:
                    if not self._iteration(batches, ipe, started):
                        break
                    interrupts.check()
        if self.stop_training and self.stop_reason is None:
            self.stop_reason = f"Solver: stopped by a callback after iteration {self.iteration}"

        self._last_params = self.model.params
        if self.best_params:
            self.model.params = {k: v.copy() for k, v in self.best_params.items()}
        self._call("on_train_end")

    # --- evaluation ---------------------------------------------------------------------
    def check_accuracy(
        self, X: np.ndarray, y: np.ndarray, num_samples: int | None = None, batch_size: int = 100
    ) -> float:
        """Accuracy of the model on ``X, y``, predicted ``batch_size`` rows at a time.

        With ``num_samples`` (and more rows than that), a random subset of that many rows
        drawn without replacement from the solver's Generator.
        """
        batch_size = positive_int("batch_size", batch_size)
        N = len(X)
        if num_samples is not None and N > num_samples:
            idx = np.sort(self.rng.choice(N, num_samples, replace=False))
            X, y = X[idx], y[idx]
            N = num_samples
        if N == 0:
            return float("nan")
        correct = 0
        for start in range(0, N, batch_size):
            scores = self.model.loss(X[start : start + batch_size])
            correct += int((scores.argmax(axis=1) == y[start : start + batch_size]).sum())
        return correct / N

    # --- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run, as copies (see :mod:`nndl.train.state`)."""
        model = self.model.state_dict()
        model["params"] = {k: v.copy() for k, v in self.training_params().items()}
        return {
            "model": model,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_val_acc": self.best_val_acc,
            "iterations_per_epoch": self.iterations_per_epoch,
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "lr_decay": self.lr_decay,
            "update_rule": self.update_rule_name,
            "update_rules": dict(self.plan.rule_name),
            "optim_configs": checks.optim_state("Solver.state_dict", self.optim_configs),
            "best_params": {k: v.copy() for k, v in self.best_params.items()},
            "history": {
                "loss": np.array(self.loss_history, dtype=np.float64),
                "train_acc": np.array(self.train_acc_history, dtype=np.float64),
                "val_acc": np.array(self.val_acc_history, dtype=np.float64),
            },
            "rng": rng_state(self.rng),
            "perm": None if self._perm is None else self._perm.copy(),
            "components": {name: c.state_dict() for name, c in self.components.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result; :meth:`train` then continues that run.

        The solver must train the same architecture with the same batch size and training
        set size (else ``ValueError``); its ``num_epochs`` may differ, to train for longer.
        Everything is checked before the solver changes: a refused state leaves the
        solver, its model and its components as they were.
        """
        self._restore(state, "Solver.load_state_dict: the state")

    def _restore(self, state: Any, where: str) -> None:
        c = checks.check_state(where, state, self)
        checks.load_objects(where, self.model, state["model"], self.components, state["components"])
        # Everything is checked and the model and components restored: now the solver.
        self.optim_configs = {p: {k: np.array(v) if isinstance(v, np.ndarray) else v
                                  for k, v in config.items()}
                              for p, config in c["optim_configs"].items()}  # fmt: skip
        self.best_params = {k: np.array(v) for k, v in c["best_params"].items()}
        self.loss_history = c["history"]["loss"]
        self.train_acc_history = c["history"]["train_acc"]
        self.val_acc_history = c["history"]["val_acc"]
        self._perm = c["perm"]
        self.epoch, self.iteration = c["epoch"], c["iteration"]
        self.best_val_acc = c["best_val_acc"]
        self.rng = c["rng"]
        self._last_params = None

    # --- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Save :meth:`state_dict` and the model's name and config to ``path`` (an atomic
        ``.npz``, no pickle; :mod:`nndl.io.checkpoint`), with the JSON ``extra``."""
        state = self.state_dict()
        model = {"name": self.model.name, "config": self.model.config, **state.pop("model")}
        return save_tree(path, {"kind": "checkpoint", "model": model, "solver": state,
                                "extra": extra})  # fmt: skip

    def load_checkpoint(self, path: str | os.PathLike) -> dict | None:
        """Restore a checkpoint of a run with this model architecture and batch size;
        ``train()`` then continues that run. Returns the checkpoint's ``extra``.

        The stored arrays' shapes are checked before any is read, everything else as by
        :meth:`load_state_dict`; a refused or damaged file (a ``ValueError`` naming it)
        leaves the solver as it was. Checkpoints of nndl 0.1.0 load too.
        """
        where = f"Solver.load_checkpoint: {path}"
        shapes = {k: v.shape for k, v in self.model.params.items()}
        rule_state = self.plan.state_shapes(shapes)
        state, extra = checks.read_checkpoint(path, shapes, len(self.X_train), rule_state)
        self._restore(state, where)
        return extra
