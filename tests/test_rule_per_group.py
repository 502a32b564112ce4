"""An update rule per parameter group: a group sets its own rule and settings, the
Solver steps each parameter with its rule, checkpoints record each parameter's rule and
state (resume is the same run; files without the record still load), and each rule
declares the shapes of its state."""

from __future__ import annotations

import numpy as np
import pytest
from _resume import StopAt, assert_resume_is_the_same_run

from nndl.fc_net import FullyConnectedNet
from nndl.optim import RULE_STATE, UPDATE_RULES, state_shapes
from nndl.solver import Solver
from nndl.train.state import check_optim_configs

BN = {"params": ["gamma*", "beta*", "b*"], "update_rule": "sgd",
      "optim_config": {"learning_rate": 0.05}}  # fmt: skip


def _data(N=32, D=6, C=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = 2 * rng.standard_normal((C, D))
    y = rng.integers(C, size=N + 12)
    X = centers[y] + rng.standard_normal((N + 12, D))
    return {"X_train": X[:N], "y_train": y[:N], "X_val": X[N:], "y_val": y[N:]}


def _solver(groups=(BN,), seed=0, rule="adam", **kw):
    model = FullyConnectedNet(
        [10], input_dim=6, num_classes=4, use_batchnorm=True, weight_scale=0.1,
        dtype=np.float64, seed=seed,
    )  # fmt: skip
    kw = {"batch_size": 8, "num_epochs": 2, **kw}
    return Solver(model, _data(), update_rule=rule, optim_config={"learning_rate": 1e-2},
                  param_groups=list(groups), verbose=False, seed=seed, **kw)  # fmt: skip


def test_each_parameter_steps_with_its_groups_rule():
    solver = _solver(batch_size=32, num_epochs=1)  # one step on the whole training set
    model = solver.model
    before = {k: v.copy() for k, v in model.params.items()}
    _, grads = model.loss(solver.X_train, solver.y_train)
    solver._step(solver.X_train, solver.y_train)
    assert solver.plan.rule_name == {k: ("adam" if k.startswith("W") else "sgd")
                                     for k in model.params}  # fmt: skip
    for k in ("b1", "gamma1", "beta1", "b2"):  # SGD: w - lr * dw, lr from the group
        np.testing.assert_allclose(model.params[k], before[k] - 0.05 * grads[k], rtol=1e-10)
        assert set(solver.optim_configs[k]) == {"inplace", "learning_rate"}
    for k in ("W1", "W2"):  # Adam's first step moves every weight by about lr
        step = np.abs(model.params[k] - before[k])
        np.testing.assert_allclose(step[grads[k] != 0], 1e-2, rtol=1e-3)
        assert {"m", "v", "t"} <= set(solver.optim_configs[k])


def test_resume_with_a_rule_per_group_is_the_same_run(tmp_path):
    first = assert_resume_is_the_same_run(_solver, tmp_path, at=5)
    assert first.state_dict()["update_rules"]["W1"] == "adam"
    assert first.state_dict()["update_rules"]["beta1"] == "sgd"


def test_a_checkpoint_of_other_rules_is_refused(tmp_path):
    first = _solver(callbacks=[StopAt(5)])
    first.train()
    path = first.save_checkpoint(tmp_path / "run.npz")
    other = _solver(groups=[{**BN, "update_rule": "sgd_momentum"}])
    with pytest.raises(ValueError, match=r"trained b1 with update_rule 'sgd', this solver uses "
                                         r"'sgd_momentum'"):  # fmt: skip
        other.load_checkpoint(path)


def test_a_state_without_the_per_parameter_record_still_loads():
    # States (and files) written before the record hold the Solver's one rule.
    solver = _solver(groups=(), callbacks=[StopAt(5)])
    solver.train()
    state = solver.state_dict()
    del state["update_rules"]
    again = _solver(groups=())
    again.load_state_dict(state)
    assert again.iteration == solver.iteration == 5


def test_an_unknown_group_rule_is_named():
    with pytest.raises(ValueError, match=r"param_groups: unknown update_rule 'lion' for b1"):
        _solver(groups=[{**BN, "update_rule": "lion"}])
    with pytest.raises(ValueError, match=r"groups\[0\]\['update_rule'\] to be a rule name"):
        _solver(groups=[{**BN, "update_rule": 3}])


def _row_scale(w, dw, config=None):
    """A toy rule whose state is one number per row, not shaped like w."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    r = config.get("r")
    r = np.zeros(w.shape[:1]) if r is None else r
    r = 0.9 * r + 0.1 * np.square(dw).reshape(len(w), -1).mean(axis=1)
    config["r"] = r
    scale = 1.0 / (np.sqrt(r) + 1e-8)
    return w - config["learning_rate"] * dw * scale.reshape(-1, *([1] * (w.ndim - 1))), config


def test_a_rule_may_keep_state_not_shaped_like_its_parameter(tmp_path, monkeypatch):
    monkeypatch.setitem(UPDATE_RULES, "row_scale", _row_scale)
    monkeypatch.setitem(RULE_STATE, "row_scale", lambda shape: {"r": shape[:1]})
    groups = [{"params": "W*", "update_rule": "row_scale"}]
    full = _solver(groups=groups)
    full.train()
    first = _solver(groups=groups, callbacks=[StopAt(5)])
    first.train()
    assert first.optim_configs["W1"]["r"].shape == (6,)
    path = first.save_checkpoint(tmp_path / "run.npz")
    resumed = _solver(groups=groups, seed=3)
    resumed.load_checkpoint(path)
    resumed.train()
    np.testing.assert_array_equal(resumed.training_params()["W1"], full.training_params()["W1"])
    # The declared shape is what the check holds the state to.
    shapes = {"W1": (6, 10)}
    declared = {"W1": state_shapes("row_scale", (6, 10))}
    assert declared == {"W1": {"r": (6,)}}
    check_optim_configs("here", {"W1": {"r": np.zeros(6)}}, shapes, None, declared)
    with pytest.raises(ValueError, match=r"state W1/r of shape \(6, 10\) but the rule of"):
        check_optim_configs("here", {"W1": {"r": np.zeros((6, 10))}}, shapes, None, declared)


def test_every_named_rule_declares_its_state():
    assert set(RULE_STATE) == set(UPDATE_RULES)
    w = np.ones((3, 2))
    for name, rule in UPDATE_RULES.items():
        _, config = rule(w.copy(), np.full_like(w, 0.1), {})
        arrays = {k: v.shape for k, v in config.items() if isinstance(v, np.ndarray)}
        assert arrays == state_shapes(name, w.shape), name


# --- train_epochs: a group that trains for the first epochs only ---------------------------


def _rates(solver):
    """Every parameter's learning rate at each update, and which parameters moved."""
    seen, moved = [], []
    for _ in range(solver.num_iterations):
        before = {k: v.copy() for k, v in solver.model.params.items()}
        solver._step(solver.X_train[:8], solver.y_train[:8])
        solver.iteration += 1
        seen.append({k: c.get("learning_rate") for k, c in solver.optim_configs.items()})
        now = solver.model.params
        moved.append({k for k, v in now.items() if not np.array_equal(v, before[k])})
    return seen, moved


def test_a_group_with_train_epochs_runs_its_schedule_over_them_then_stops():
    groups = [{"params": ["gamma*", "beta*"], "train_epochs": 1.5}]
    solver = _solver(groups, rule="sgd", num_epochs=4, schedule="linear")  # 4 updates/epoch
    assert solver.iterations_per_epoch == 4 and solver.num_iterations == 16
    rates, moved = _rates(solver)
    for t in range(16):  # the others: 1 - t/16; the group: 1 - t/6 for its 6 updates
        assert rates[t]["W1"] == pytest.approx(1e-2 * (1 - t / 16), rel=1e-12)
        if t < 6:
            assert rates[t]["beta1"] == pytest.approx(1e-2 * (1 - t / 6), rel=1e-12)
            assert {"gamma1", "beta1"} <= moved[t]
        else:  # unchanged by gradient, momentum or decay from update 6 on
            assert not {"gamma1", "beta1"} & moved[t], t
            assert rates[t]["beta1"] == rates[5]["beta1"]
        assert {"W1", "b1", "W2", "b2"} <= moved[t]


def test_resume_with_train_epochs_is_the_same_run(tmp_path):
    groups = [{"params": "beta*", "train_epochs": 1}]

    def make(**kw):
        return _solver(groups, schedule="linear", **kw)

    assert_resume_is_the_same_run(make, tmp_path, at=3)  # resumed inside its epochs
    assert_resume_is_the_same_run(make, tmp_path / "late", at=6)  # and after them


@pytest.mark.parametrize("bad", [0, -1, float("inf"), "3", True])
def test_train_epochs_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match=r"groups\[0\]\['train_epochs'\] to be a number > 0"):
        _solver([{"params": "beta*", "train_epochs": bad}])
