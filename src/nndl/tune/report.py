"""What a study found: a table of its trials, the best trial's command, Optuna's plots."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import train_cli

__all__ = ["trial_table", "best_summary", "write_plots", "PLOTS"]

# File name -> Optuna's matplotlib plot, its keywords, and axis labels to set (or None).
PLOTS = {
    "history.png": ("plot_optimization_history", {"target_name": "val_acc"}, None),
    "importance.png": ("plot_param_importances", {"target_name": "val_acc"}, None),
    "intermediate.png": ("plot_intermediate_values", {}, ("epoch", "val_acc")),
}


def _value(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _params(trial: Any) -> str:
    return " ".join(f"{k}={_value(v)}" for k, v in trial.params.items())


def _duration(trial: Any) -> str:
    d = trial.duration
    return "-" if d is None else f"{d.total_seconds():.1f}s"


def trial_table(trials: list[Any]) -> str:
    """One line per trial: number, state, value, epochs reported, duration, parameters."""
    head = f"{'trial':>5}  {'state':<8}  {'val_acc':>7}  {'epochs':>6}  {'time':>8}  params"
    lines = [head]
    for t in trials:
        value = "-" if t.value is None else f"{t.value:.4f}"
        epochs = max(t.intermediate_values, default=0)
        lines.append(
            f"{t.number:>5}  {t.state.name:<8}  {value:>7}  {epochs:>6}  "
            f"{_duration(t):>8}  {_params(t)}"
        )
    for t in trials:
        if t.state.name == "FAIL" and t.user_attrs.get("error"):
            lines.append(f"trial {t.number} failed: {t.user_attrs['error']}")
    return "\n".join(lines)


def best_summary(study: Any) -> str:
    """The best trial, its run folder, and the full ``nndl train`` command that made it."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return "no trial has finished yet"
    best = study.best_trial
    epoch = max(best.intermediate_values, key=best.intermediate_values.get, default=None)
    lines = [
        f"best: trial {best.number}, val_acc {best.value:.4f}"
        + (f" (epoch {epoch})" if epoch is not None else ""),
    ]
    if "run_dir" in best.user_attrs:
        lines.append(f"run folder: {best.user_attrs['run_dir']}")
    if "command" in best.user_attrs:
        lines.append(f"command: {best.user_attrs['command']}")
    return "\n".join(lines)


def write_plots(study: Any, out: Path, say: Callable[[str], None]) -> list[Path]:
    """Write :data:`PLOTS` into ``out`` (atomically); a plot the study cannot have yet
    (importance before two trials finish) is reported and skipped."""
    import optuna
    import optuna.visualization.matplotlib as ovm

    train_cli.require_matplotlib()
    import matplotlib.pyplot as plt

    written = []
    for name, (fn, kwargs, labels) in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                ax = getattr(ovm, fn)(study, **kwargs)
            except (ValueError, RuntimeError) as exc:
                say(f"{name}: not written ({exc})")
                continue
        if labels is not None:
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
        fig = ax.figure
        try:
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            train_cli.save_figure(fig, out / name)
        finally:
            plt.close(fig)
        written.append(out / name)
    return written
