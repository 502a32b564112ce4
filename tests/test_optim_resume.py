"""The new update rules through today's Solver: their configs (a bool, a momentum
buffer, weight decay) survive a checkpoint and the resumed run is the same run."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.callbacks import Callback
from nndl.fc_net import FullyConnectedNet
from nndl.solver import Solver


def _data(N=40, D=6, C=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = 2 * rng.standard_normal((C, D))
    y = rng.integers(C, size=N + 12)
    X = centers[y] + rng.standard_normal((N + 12, D))
    return {"X_train": X[:N], "y_train": y[:N], "X_val": X[N:], "y_val": y[N:]}


def _solver(rule, seed=0, **kw):
    model = FullyConnectedNet(
        [10], input_dim=6, num_classes=4, use_batchnorm=True, weight_scale=0.1,
        dtype=np.float64, seed=seed,
    )  # fmt: skip
    config = {"learning_rate": 1e-2, "weight_decay": 0.05}
    return Solver(model, _data(), update_rule=rule, optim_config=config, batch_size=8,
                  num_epochs=2, verbose=False, seed=seed, **kw)  # fmt: skip


class _StopAt(Callback):
    def on_iteration_end(self, solver, iteration, loss):
        solver.stop_training = iteration == 7


@pytest.mark.parametrize("rule", ["sgdw", "adamw"])
def test_resume_with_the_decoupled_rules_is_the_same_run(tmp_path, rule):
    full = _solver(rule)
    full.train()
    first = _solver(rule, callbacks=[_StopAt()])
    first.train()
    assert first.iteration == 7
    path = first.save_checkpoint(tmp_path / "run.npz")
    resumed = _solver(rule, seed=3)
    resumed.load_checkpoint(path)
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.training_params()[k], full.training_params()[k])
        assert resumed.optim_configs[k]["weight_decay"] == 0.05
    if rule == "sgdw":
        assert resumed.optim_configs["W1"]["nesterov"] is True
