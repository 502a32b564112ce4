"""A run stopped after some iteration, saved and resumed must end as the uninterrupted run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from nndl.callbacks import Callback


class StopAt(Callback):
    """Stop training at the end of iteration ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_iteration_end(self, solver, iteration, loss):
        solver.stop_training = iteration == self.at


def assert_resume_is_the_same_run(make_solver: Callable, tmp_path: Path, at: int):
    """``make_solver(**kw)`` trained straight, and trained to iteration ``at``, saved and
    resumed in a solver built from another seed: the same losses and weights. Returns the
    stopped solver (for checks of its saved state)."""
    full = make_solver()
    full.train()
    first = make_solver(callbacks=[StopAt(at)])
    first.train()
    path = first.save_checkpoint(tmp_path / "run.npz")
    resumed = make_solver(seed=5)
    resumed.load_checkpoint(path)
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.training_params()[k], full.training_params()[k])
    return first
