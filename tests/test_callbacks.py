"""Callback hooks: order, logs, stopping; PrintProgress lines."""

import numpy as np
import pytest

from nndl.callbacks import Callback, History, PrintProgress
from nndl.fc_net import TwoLayerNet
from nndl.solver import Solver


def _data(N=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N + 10, 4))
    y = (X[:, 0] > 0).astype(int)
    return {"X_train": X[:N], "y_train": y[:N], "X_val": X[N:], "y_val": y[N:]}


def _model():
    return TwoLayerNet(input_dim=4, hidden_dim=6, num_classes=2, weight_scale=0.1, seed=0)


class Recorder(Callback):
    def __init__(self, tag, events):
        self.tag, self.events = tag, events

    def on_train_begin(self, solver):
        self.events.append((self.tag, "begin", len(solver.val_acc_history)))

    def on_iteration_end(self, solver, iteration, loss):
        assert loss == solver.loss_history[-1]
        self.events.append((self.tag, "iter", iteration))

    def on_epoch_end(self, solver, epoch, logs):
        self.events.append((self.tag, "epoch", epoch))

    def on_train_end(self, solver):
        self.events.append((self.tag, "end", solver.iteration))


def test_hooks_are_called_in_order():
    events = []
    solver = Solver(_model(), _data(), batch_size=10, num_epochs=2, verbose=False,
                    callbacks=[Recorder("a", events), Recorder("b", events)])  # fmt: skip
    solver.train()
    expected = [("begin", 1)]
    for epoch in (1, 2):
        for it in range(3 * epoch - 2, 3 * epoch + 1):
            expected.append(("iter", it))
        expected.append(("epoch", epoch))
    expected.append(("end", 6))
    interleaved = [(tag, *e) for e in expected for tag in "ab"]
    assert events == interleaved


def test_epoch_logs():
    history = History()
    solver = Solver(_model(), _data(), update_rule="sgd", optim_config={"learning_rate": 0.2},
                    lr_decay=0.5, batch_size=10, num_epochs=3, verbose=False,
                    callbacks=[history])  # fmt: skip
    solver.train()
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    for i, e in enumerate(history.epochs):
        assert e["train_acc"] == solver.train_acc_history[i + 1]
        assert e["val_acc"] == solver.val_acc_history[i + 1]
        assert e["loss"] == pytest.approx(np.mean(solver.loss_history[3 * i : 3 * i + 3]))
        assert e["lr"] == pytest.approx(0.2 * 0.5**i)
        assert e["best_val_acc"] == max(solver.val_acc_history[: i + 2])
    assert 0 <= history.epochs[0]["elapsed"] <= history.epochs[-1]["elapsed"]


class StopAt(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_iteration_end(self, solver, iteration, loss):
        if iteration == self.iteration:
            solver.stop_training = True


def test_stop_training_stops_after_the_current_iteration():
    solver = Solver(_model(), _data(), batch_size=10, num_epochs=5, verbose=False,
                    callbacks=[StopAt(4)])  # fmt: skip
    solver.train()
    assert solver.iteration == 4 and solver.epoch == 1
    assert "stopped by a callback" in solver.stop_reason


def test_print_progress_lines(capsys):
    solver = Solver(_model(), _data(), batch_size=10, num_epochs=1, verbose=False,
                    callbacks=[PrintProgress(print_every=2)])  # fmt: skip
    solver.train()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"(Epoch 0 / 1) train acc: {solver.train_acc_history[0]:f}; "
        f"val_acc: {solver.val_acc_history[0]:f}"
    )
    assert out[1] == f"(Iteration 1 / 3) loss: {solver.loss_history[0]:f}"
    assert out[2] == f"(Iteration 3 / 3) loss: {solver.loss_history[2]:f}"
    assert out[3].startswith("(Epoch 1 / 1) train acc: ")
    assert len(out) == 4


def test_verbose_does_not_duplicate_a_given_printer(capsys):
    solver = Solver(_model(), _data(), batch_size=10, num_epochs=1, verbose=True,
                    callbacks=[PrintProgress(print_every=100)])  # fmt: skip
    solver.train()
    assert len(capsys.readouterr().out.splitlines()) == 3  # epoch 0, iteration 1, epoch 1
    with pytest.raises(ValueError, match="PrintProgress: expected print_every >= 1"):
        PrintProgress(0)
