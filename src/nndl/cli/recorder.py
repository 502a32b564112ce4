"""The Solver callback that keeps a run folder up to date while ``nndl train`` runs."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..callbacks import Callback
from ..models import save_model
from .run_folder import RunFolder

__all__ = ["RunRecorder"]


def _current_lr(solver: Any) -> float:
    if getattr(solver, "learning_rate", None) is not None:
        return float(solver.learning_rate)  # the base rate of the latest step
    configs = getattr(solver, "optim_configs", None) or {}
    for cfg in configs.values():
        if "learning_rate" in cfg:
            return float(cfg["learning_rate"])
    return float(getattr(solver, "optim_config", {}).get("learning_rate", float("nan")))


def _averaged(solver: Any) -> Any:
    """The solver's context holding the evaluated (averaged) weights, if it has one."""
    averaged = getattr(solver, "averaged", None)
    return averaged() if averaged is not None else contextlib.nullcontext()


def _acc(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


class RunRecorder(Callback):
    """Solver callback that keeps the run folder up to date and reports progress.

    At each epoch end: appends to metrics.jsonl, writes last_model.npz (and best_model.npz
    when validation accuracy improved, or every epoch without a validation split, whose
    ``val_acc`` is recorded as null), then checkpoint.npz (last, so that a resume never
    skips a recorded epoch), and prints the one-line summary. The models saved are the
    ones evaluated: with an EMA of the weights, the averages (``solver.averaged()``).
    Stops the solver at the time limit or the target accuracy. :meth:`finish` writes the
    plots and the summary.

    Progress within an epoch: a tqdm bar when stderr is a terminal; otherwise (a log file,
    CI) one plain line at most every ``progress_every`` seconds, since a bar redrawn into
    a file writes thousands of partial lines.
    """

    progress_every = 60.0

    def __init__(
        self,
        run: RunFolder,
        class_names: Sequence[str],
        input_dim: Sequence[int],
        quiet: bool = False,
        time_limit: float | None = None,
        target_acc: float | None = None,
        plots: bool = True,
    ):
        self.run = run
        self.class_names = list(class_names)
        self.input_dim = tuple(input_dim)
        self.quiet = quiet
        self.time_limit = time_limit
        self.target_acc = target_acc
        self.plots = plots
        self.records: list[dict[str, Any]] = []
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.prior_elapsed = 0.0
        self.start_wall = time.perf_counter()
        self._t0 = self.start_wall
        self._bar = None
        self._last_progress = self._t0
        self.stop_reason: str | None = None

    def resume_from(self, solver: Any) -> None:
        """Keep the metrics of the epochs the checkpoint holds and continue counting."""
        self.records = [r for r in self.run.read_metrics() if r["epoch"] <= solver.epoch]
        if self.records:
            self.prior_elapsed = float(self.records[-1]["elapsed"])
            scored = [r for r in self.records if r["val_acc"] is not None]
            best = max(scored, key=lambda r: r["val_acc"]) if scored else self.records[-1]
            self.best_val_acc = float("nan") if best["val_acc"] is None else best["val_acc"]
            self.best_epoch = int(best["epoch"])

    def _elapsed(self) -> float:
        return self.prior_elapsed + time.perf_counter() - self._t0

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def on_train_begin(self, solver: Any) -> None:
        self._t0 = self._last_progress = time.perf_counter()
        if self.quiet or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:  # the bar is a nicety; plain progress lines still appear
            return
        self._bar = tqdm(
            total=solver.num_iterations,
            initial=solver.iteration,
            unit="it",
            dynamic_ncols=True,
            file=sys.stderr,
            desc="train",
        )

    def on_iteration_end(self, solver: Any, iteration: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{loss:.3f}", lr=f"{_current_lr(solver):.1e}", refresh=False
            )
            self._bar.update(1)
        elif not self.quiet and time.perf_counter() - self._last_progress >= self.progress_every:
            self._last_progress = time.perf_counter()
            print(
                f"iteration {iteration}/{solver.num_iterations}  loss {loss:.3f}  "
                f"lr {_current_lr(solver):.1e}  {self._elapsed():.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if self.time_limit is not None and time.perf_counter() - self._t0 >= self.time_limit:
            self._stop(solver, f"time limit of {self.time_limit:g}s reached")

    def _stop(self, solver: Any, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        solver.stop_training = True
        if getattr(solver, "stop_reason", None) is None:
            solver.stop_reason = reason

    def on_epoch_end(self, solver: Any, epoch: int, logs: dict[str, Any]) -> None:
        if epoch < 1 or any(r["epoch"] == epoch for r in self.records):
            return  # the accuracy check before training, or an epoch already recorded
        n = getattr(solver, "iterations_per_epoch", 0) or 1
        loss = logs.get("loss")
        if loss is None:
            loss = float(np.mean(solver.loss_history[-n:])) if solver.loss_history else float("nan")
        val = float(logs["val_acc"])
        lr = logs.get("lr")
        record = {
            "epoch": int(epoch),
            "iteration": int(solver.iteration),
            "loss": float(loss),
            "train_acc": float(logs["train_acc"]),
            "val_acc": None if math.isnan(val) else val,  # null: no validation split
            "lr": float(_current_lr(solver) if lr is None else lr),
            "elapsed": round(self._elapsed(), 3),
        }
        self.records.append(record)
        self.run.write_metrics(self.records)
        extra = {k: record[k] for k in ("epoch", "iteration", "train_acc", "val_acc")}
        improved = math.isnan(val) or val > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = val, record["epoch"]
        with _averaged(solver):
            save_model(self.run.last, solver.model, extra=extra)
            if improved:
                save_model(self.run.best, solver.model, extra=extra)
        solver.save_checkpoint(self.run.checkpoint)
        self._print(
            f"epoch {epoch}/{solver.num_epochs}  loss {record['loss']:.3f}  "
            f"train {record['train_acc']:.3f}  val {_acc(val)}  best {_acc(self.best_val_acc)}  "
            f"lr {record['lr']:.1e}  {record['elapsed']:.1f}s"
        )
        if self.target_acc is not None and val >= self.target_acc:
            self._stop(solver, f"target accuracy {self.target_acc:g} reached")

    def on_train_end(self, solver: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def write_plots(self, solver: Any) -> None:
        from .. import plots  # matplotlib is imported only when plots are wanted

        r = self.records
        plots.plot_loss(
            solver.loss_history,
            getattr(solver, "iterations_per_epoch", None),
            path=self.run.path / "loss.png",
        )
        plots.plot_accuracy(
            [x["epoch"] for x in r],
            [x["train_acc"] for x in r],
            [math.nan if x["val_acc"] is None else x["val_acc"] for x in r],
            path=self.run.path / "accuracy.png",
        )
        plots.plot_val_acc_vs_time(
            [x["elapsed"] for x in r],
            [math.nan if x["val_acc"] is None else x["val_acc"] for x in r],
            path=self.run.path / "val_acc_vs_time.png",
        )
        schedule, base = getattr(solver, "schedule", None), solver.optim_config.get("learning_rate")
        if schedule is not None and base is not None:
            ipe = solver.iterations_per_epoch
            plots.plot_lr_schedule(base * schedule.multipliers(solver.num_iterations, ipe), ipe,
                                   path=self.run.path / "lr_schedule.png")  # fmt: skip
        first = getattr(solver.model, "first_weights", lambda: None)()
        if first is None:
            return
        w = np.asarray(first)
        if w.ndim == 2 and w.shape[0] == int(np.prod(self.input_dim)):
            w = w.T.reshape(-1, *self.input_dim)[:100]  # fully connected: weights as images
        if w.ndim == 4:
            plots.plot_filters(w, path=self.run.path / "filters.png")

    def finish(self, solver: Any, interrupted: str | None = None) -> None:
        """Close the bar, write the plots, print the best accuracy, wall time and folder.
        ``interrupted``: what stopped the run from outside ("interrupted (Ctrl-C)", ...).

        A stop in the middle of an epoch (time limit, Ctrl-C) has no metrics line, but
        its updates are kept in last_model.npz and checkpoint.npz for ``--resume``.
        """
        self.on_train_end(solver)
        done = self.records[-1]["iteration"] if self.records else 0
        if solver.iteration > done:
            model = solver.model
            params, model.params = model.params, solver.training_params()
            try:
                extra = {"epoch": solver.epoch, "iteration": int(solver.iteration)}
                with _averaged(solver):
                    save_model(self.run.last, model, extra=extra)
            finally:
                model.params = params
            solver.save_checkpoint(self.run.checkpoint)
        if self.plots and self.records:
            self.write_plots(solver)
        reason = self.stop_reason or getattr(solver, "stop_reason", None)
        if interrupted:
            reason = interrupted
        if reason:
            print(f"stopped early: {reason}")
        if self.records and not math.isnan(self.best_val_acc):
            print(f"best val acc: {self.best_val_acc:.4f} (epoch {self.best_epoch})")
        wall = time.perf_counter() - self.start_wall
        print(f"wall time: {wall:.1f}s (training {time.perf_counter() - self._t0:.1f}s)")
        print(f"run folder: {self.run.path}")
