"""Hooks into :class:`nndl.solver.Solver` training, and the progress printer.

The Solver calls each callback's methods in list order:

- ``on_train_begin(solver)`` once per ``train()`` call, after the accuracy check at the
  start (epoch 0) of a fresh run, so ``solver.val_acc_history[0]`` is available;
- ``on_iteration_end(solver, iteration, loss)`` after each update (``iteration`` counts
  from 1 over the whole run);
- ``on_epoch_end(solver, epoch, logs)`` after each epoch's accuracy check (epochs count
  from 1), with ``logs`` holding ``train_acc``, ``val_acc``, ``loss`` (mean loss of the
  epoch), ``lr`` (learning rate used during the epoch), ``elapsed`` (seconds since this
  ``train()`` began) and ``best_val_acc``;
- ``on_train_end(solver)`` once, when training finishes or stops.

A callback stops training by setting ``solver.stop_training = True`` (optionally with a
``solver.stop_reason``); the Solver stops after the current iteration.
"""

from __future__ import annotations

from typing import Any

# The Solver imports this module, so importing its type here would be a cycle; the
# annotations name it through this alias.
Solver = Any


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_begin(self, solver: Solver) -> None:
        """Called when ``train()`` starts."""

    def on_iteration_end(self, solver: Solver, iteration: int, loss: float) -> None:
        """Called after each parameter update."""

    def on_epoch_end(self, solver: Solver, epoch: int, logs: dict[str, Any]) -> None:
        """Called after each epoch's accuracy check."""

    def on_train_end(self, solver: Solver) -> None:
        """Called when training finishes or stops."""


class PrintProgress(Callback):
    """Print the classic progress lines (the Solver adds one when ``verbose=True``)::

        (Iteration 1 / 980) loss: 2.303649
        (Epoch 0 / 1) train acc: 0.113000; val_acc: 0.105000

    The loss every ``print_every`` iterations starting with the first, the accuracies at
    the start of a fresh run and after every epoch.
    """

    def __init__(self, print_every: int = 10) -> None:
        if print_every < 1:
            raise ValueError(f"PrintProgress: expected print_every >= 1, got {print_every}")
        self.print_every = int(print_every)

    @staticmethod
    def _epoch_line(solver: Solver, epoch: int, train_acc: float, val_acc: float) -> None:
        print(
            f"(Epoch {epoch} / {solver.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}"
        )

    def on_train_begin(self, solver: Solver) -> None:
        if solver.iteration == 0 and solver.val_acc_history:
            self._epoch_line(solver, 0, solver.train_acc_history[0], solver.val_acc_history[0])

    def on_iteration_end(self, solver: Solver, iteration: int, loss: float) -> None:
        if (iteration - 1) % self.print_every == 0:
            print(f"(Iteration {iteration} / {solver.num_iterations}) loss: {loss:f}")

    def on_epoch_end(self, solver: Solver, epoch: int, logs: dict[str, Any]) -> None:
        self._epoch_line(solver, epoch, logs["train_acc"], logs["val_acc"])


class History(Callback):
    """Record every epoch's ``logs`` in ``self.epochs`` (a list of dicts)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []

    def on_epoch_end(self, solver: Solver, epoch: int, logs: dict[str, Any]) -> None:
        self.epochs.append({"epoch": epoch, **logs})


__all__ = ["Callback", "PrintProgress", "History"]
