"""Solver semantics: iteration count, shuffling, lr decay, accuracy, printing, errors."""

import re

import numpy as np
import pytest

from nndl.fc_net import FullyConnectedNet, TwoLayerNet
from nndl.solver import Solver


class SpyModel:
    """A linear softmax model that records the training rows it is given.

    Row ``i`` of X is ``[i, features...]`` so the recorded first column is the index.
    ``nan_at`` makes the loss of that (1-based) training call NaN.
    """

    def __init__(self, D=3, C=3, nan_at=None):
        self.params = {"W": np.zeros((D, C))}
        self.seen: list[np.ndarray] = []
        self.nan_at = nan_at

    def loss(self, X, y=None):
        scores = X[:, 1:] @ self.params["W"][1:]
        if y is None:
            return scores
        self.seen.append(X[:, 0].astype(int))
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(len(y)), y]).mean()
        if self.nan_at is not None and len(self.seen) >= self.nan_at:
            loss = float("nan")
        dscores = probs
        dscores[np.arange(len(y)), y] -= 1
        grad = np.zeros_like(self.params["W"])
        grad[1:] = X[:, 1:].T @ dscores / len(y)
        return loss, {"W": grad}


def spy_data(N=40, n_val=10, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=N + n_val)
    feats = np.eye(3)[y] * 2 + 0.3 * rng.standard_normal((N + n_val, 3))
    X = np.concatenate([np.arange(N + n_val)[:, None], feats[:, 1:]], axis=1)
    return {"X_train": X[:N], "y_train": y[:N], "X_val": X[N:], "y_val": y[N:]}


def model_data(N=40, seed=0):
    """spy_data without the index column, for real models (input_dim=2, 3 classes)."""
    return {k: v[:, 1:] if k.startswith("X") else v for k, v in spy_data(N, seed=seed).items()}


@pytest.mark.parametrize("N, batch_size, epochs", [(103, 10, 3), (5, 10, 2), (40, 40, 1)])
def test_iteration_count(N, batch_size, epochs):
    solver = Solver(SpyModel(), spy_data(N), batch_size=batch_size, num_epochs=epochs,
                    verbose=False, seed=0)  # fmt: skip
    solver.train()
    expected = max(N // batch_size, 1) * epochs
    assert solver.num_iterations == expected == solver.iteration
    assert len(solver.loss_history) == expected
    assert solver.epoch == epochs
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == epochs + 1


def test_each_epoch_is_a_fresh_permutation():
    model = SpyModel()
    solver = Solver(model, spy_data(40), batch_size=8, num_epochs=3, verbose=False, seed=1)
    solver.train()
    assert len(model.seen) == 15
    epochs = [np.concatenate(model.seen[i * 5 : (i + 1) * 5]) for i in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(40))  # every example once per epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    again = SpyModel()
    Solver(again, spy_data(40), batch_size=8, num_epochs=3, verbose=False, seed=1).train()
    assert all(np.array_equal(a, b) for a, b in zip(model.seen, again.seen, strict=True))


def test_uneven_batches_visit_each_example_at_most_once():
    model = SpyModel()
    Solver(model, spy_data(23), batch_size=5, num_epochs=2, verbose=False, seed=0).train()
    first = np.concatenate(model.seen[:4])
    assert len(first) == 20 and len(set(first.tolist())) == 20


def test_lr_decay_per_epoch_for_every_param():
    model = FullyConnectedNet([5], input_dim=2, num_classes=3, seed=0)
    data = model_data(30)
    solver = Solver(model, data, update_rule="sgd_momentum",
                    optim_config={"learning_rate": 0.1, "momentum": 0.5}, lr_decay=0.5,
                    batch_size=10, num_epochs=3, verbose=False, seed=0)  # fmt: skip
    solver.train()
    assert set(solver.optim_configs) == set(model.params)
    for config in solver.optim_configs.values():
        assert config["learning_rate"] == pytest.approx(0.1 * 0.5**3)
        assert config["momentum"] == 0.5
    assert len({id(c) for c in solver.optim_configs.values()}) == len(model.params)


def test_best_params_are_swapped_in_and_are_copies():
    model = TwoLayerNet(input_dim=2, hidden_dim=10, num_classes=3, weight_scale=0.1, seed=0)
    solver = Solver(model, model_data(60), update_rule="adam", optim_config={"learning_rate": 0.05},
                    batch_size=10, num_epochs=4, verbose=False, seed=0)  # fmt: skip
    solver.train()
    assert solver.best_val_acc == max(solver.val_acc_history)
    assert solver.best_val_acc > 0.6
    for k, v in solver.best_params.items():
        assert np.array_equal(model.params[k], v) and model.params[k] is not v
    assert solver.check_accuracy(solver.X_val, solver.y_val) == solver.best_val_acc


def test_check_accuracy_batches_and_subsamples():
    model = TwoLayerNet(input_dim=2, hidden_dim=10, num_classes=3, weight_scale=0.5, seed=0)
    data = model_data(60)
    solver = Solver(model, data, verbose=False, seed=0)
    pred = model.loss(data["X_train"]).argmax(axis=1)
    expected = float(np.mean(pred == data["y_train"]))
    assert solver.check_accuracy(data["X_train"], data["y_train"]) == expected
    assert solver.check_accuracy(data["X_train"], data["y_train"], batch_size=7) == expected
    sub = solver.check_accuracy(data["X_train"], data["y_train"], num_samples=20)
    assert sub * 20 == round(sub * 20) and 0 <= sub <= 1


def test_verbose_prints_spec_lines(capsys):
    solver = Solver(SpyModel(), spy_data(40), batch_size=4, num_epochs=2, print_every=4, seed=0)
    solver.train()
    lines = capsys.readouterr().out.splitlines()
    it = re.compile(r"^\(Iteration (\d+) / 20\) loss: \d+\.\d{6}$")
    ep = re.compile(r"^\(Epoch (\d+) / 2\) train acc: \d\.\d{6}; val_acc: \d\.\d{6}$")
    assert all(it.match(line) or ep.match(line) for line in lines), lines
    assert [int(it.match(x).group(1)) for x in lines if it.match(x)] == [1, 5, 9, 13, 17]
    assert [int(ep.match(x).group(1)) for x in lines if ep.match(x)] == [0, 1, 2]
    assert ep.match(lines[0])  # the check at the start
    assert lines[-1] == (
        f"(Epoch 2 / 2) train acc: {solver.train_acc_history[-1]:f}; "
        f"val_acc: {solver.val_acc_history[-1]:f}"
    )


def test_quiet_solver_prints_nothing(capsys):
    Solver(SpyModel(), spy_data(20), batch_size=5, num_epochs=1, verbose=False).train()
    assert capsys.readouterr().out == ""


def test_unknown_keyword_and_rule_are_value_errors():
    with pytest.raises(ValueError, match=r"unknown keyword.*'learning_rate'.*update_rule"):
        Solver(SpyModel(), spy_data(), learning_rate=0.1)
    with pytest.raises(ValueError, match=r"unknown update_rule 'adagrad'.*'adam'.*'sgd'"):
        Solver(SpyModel(), spy_data(), update_rule="adagrad")
    with pytest.raises(ValueError, match="data is missing"):
        Solver(SpyModel(), {"X_train": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="batch_size"):
        Solver(SpyModel(), spy_data(), batch_size=0)


def test_callable_update_rule():
    calls = []

    def rule(w, dw, config=None):
        calls.append(config.get("learning_rate"))
        return w - config["learning_rate"] * dw, config

    solver = Solver(SpyModel(), spy_data(20), update_rule=rule,
                    optim_config={"learning_rate": 0.5}, lr_decay=0.1, batch_size=10,
                    num_epochs=2, verbose=False)  # fmt: skip
    solver.train()
    assert calls == pytest.approx([0.5, 0.5, 0.05, 0.05])


def test_non_finite_loss_stops_and_keeps_best(capsys):
    model = SpyModel(nan_at=7)
    solver = Solver(model, spy_data(40), update_rule="sgd", optim_config={"learning_rate": 1.0},
                    batch_size=10, num_epochs=3, seed=0)  # fmt: skip
    with pytest.warns(RuntimeWarning, match="non-finite loss nan at iteration 7"):
        solver.train()
    assert solver.iteration == 6 and len(solver.loss_history) == 6
    assert "non-finite loss" in solver.stop_reason
    assert "non-finite loss nan at iteration 7" in capsys.readouterr().out
    assert np.array_equal(model.params["W"], solver.best_params["W"])
    assert np.isfinite(model.params["W"]).all()


def test_seed_makes_training_reproducible():
    def run():
        model = FullyConnectedNet([8], input_dim=2, num_classes=3, dropout=0.7, seed=2)
        s = Solver(model, model_data(50), update_rule="adam", batch_size=10, num_epochs=2,
                   num_train_samples=20, verbose=False, seed=5)  # fmt: skip
        s.train()
        return s.loss_history, s.train_acc_history, model.params

    a, b = run(), run()
    assert a[0] == b[0] and a[1] == b[1]
    assert all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
