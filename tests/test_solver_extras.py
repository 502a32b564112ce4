"""The Solver's training extras: a per-iteration schedule, parameter groups, an EMA of
the weights for evaluation, augmented batches from a BatchLoader, no validation set and
data-initialised layers; each exact on resume (state_dict, checkpoint file, Ctrl-C), and
SPEC's classic path unchanged."""

from __future__ import annotations

import math
import signal
import threading

import numpy as np
import pytest

from nndl.callbacks import Callback
from nndl.ema import EMA
from nndl.network import Network
from nndl.schedules import learning_rate_at, lr_decay_schedule, make_schedule
from nndl.solver import Solver

LAYERS = [
    {"type": "conv2d", "name": "whiten", "filters": 6, "kernel_size": 1, "pad": "valid",
     "init": "patch_whitening", "trainable": False},
    {"type": "conv_bn_act", "name": "block", "filters": 6, "bias": False, "scale": False,
     "activation": "gelu", "momentum": 0.6, "init": "dirac_uniform"},
    "global_avgpool",
    {"type": "linear", "name": "head", "units": 3, "bias": False, "scale": 0.5,
     "init": "uniform_fan_in"},
]  # fmt: skip
GROUPS = [{"params": "block.bn.beta", "lr_mult": 4.0, "weight_decay": 0.0}]
SCHEDULE = {"name": "triangular", "start": 0.2, "peak_at": 0.3, "end": 0.1}
EMA_SPEC = {"decay": 0.8, "every": 2, "warmup": False, "lookahead": True, "power": 1.0}
AUGMENT = [{"name": "random_crop", "pad": 1}, "alternating_flip", {"name": "cutout", "size": 2}]
EXTRAS = {"schedule": SCHEDULE, "param_groups": GROUPS, "ema": EMA_SPEC, "augment": AUGMENT}


def _data(n=48, n_val=12, seed=0):
    """Three classes told apart by their mean colour, robust to shifts and mirrors."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n + n_val)
    X = np.eye(3)[y][:, :, None, None] + 0.5 * rng.standard_normal((n + n_val, 3, 6, 6))
    return {"X_train": X[:n], "y_train": y[:n], "X_val": X[n:], "y_val": y[n:]}


def _solver(data=None, seed=0, epochs=3, **kw):
    model = Network(LAYERS, input_dim=(3, 6, 6), num_classes=3, label_smoothing=0.1,
                    dtype=np.float64, seed=seed)  # fmt: skip
    optim = {"learning_rate": 0.2, "momentum": 0.85, "weight_decay": 5e-3, "coupled_decay": True}
    opts = {"update_rule": "sgdw", "batch_size": 8, "num_epochs": epochs, "verbose": False,
            "seed": seed, "optim_config": optim}  # fmt: skip
    return Solver(model, data or _data(), **{**opts, **EXTRAS, **kw})


def _same_state(a: Solver, b: Solver) -> None:
    assert a.loss_history == b.loss_history
    assert a.val_acc_history == b.val_acc_history and a.train_acc_history == b.train_acc_history
    for k, w in a.training_params().items():
        np.testing.assert_array_equal(w, b.training_params()[k], err_msg=k)
        np.testing.assert_array_equal(a.best_params[k], b.best_params[k], err_msg=k)
    for k, v in a.model.state_arrays().items():
        np.testing.assert_array_equal(v, b.model.state_arrays()[k], err_msg=k)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["components"]["loader"] == sb["components"]["loader"]
    ea, eb = sa["components"]["ema"], sb["components"]["ema"]
    assert {k: v for k, v in ea.items() if k != "shadow"} == {
        k: v for k, v in eb.items() if k != "shadow"
    }
    for k in ea["shadow"]:
        np.testing.assert_array_equal(ea["shadow"][k], eb["shadow"][k], err_msg=k)
    for k, config in a.optim_configs.items():
        for key, value in config.items():
            np.testing.assert_array_equal(value, b.optim_configs[k][key], err_msg=f"{k}/{key}")


class _Stop(Callback):
    def __init__(self, at):
        self.at = at

    def on_iteration_end(self, solver, iteration, loss):
        solver.stop_training = iteration == self.at


class _Interrupt(Callback):
    """Ctrl-C (a real SIGINT) during step ``at``, which the Solver holds to its end."""

    def __init__(self, at):
        self.at = at

    def on_iteration_end(self, solver, iteration, loss):
        if iteration == self.at:
            signal.raise_signal(signal.SIGINT)


# --- resume is exact with every extra on --------------------------------------------------


@pytest.fixture(scope="module")
def straight() -> Solver:
    solver = _solver()
    solver.train()
    return solver


def test_a_short_run_with_every_extra_learns(straight):
    losses = straight.loss_history
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    assert straight.val_acc_history[-1] > 0.6


@pytest.mark.parametrize("at", [5, 6, 13])  # mid-epoch, an epoch end, between averages
def test_resume_from_a_state_dict_is_the_same_run(straight, at):
    first = _solver(callbacks=[_Stop(at)])
    first.train()
    assert first.iteration == at
    resumed = _solver(seed=9)  # other initial weights and seeds: all restored
    resumed.load_state_dict(first.state_dict())
    resumed.train()
    _same_state(straight, resumed)


def test_ctrl_c_then_resume_from_the_checkpoint_file_is_the_same_run(straight, tmp_path):
    first = _solver(callbacks=[_Interrupt(7)])
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert first.iteration == 7  # the step Ctrl-C came in was completed
    alive = [t for t in threading.enumerate() if t.name == "nndl-BatchLoader" and t.is_alive()]
    assert not alive  # the prefetch thread stopped with the loop
    path = first.save_checkpoint(tmp_path / "c.npz")
    resumed = _solver(seed=4)
    resumed.load_checkpoint(path)
    resumed.train()
    _same_state(straight, resumed)


def test_a_longer_resumed_run_continues(straight):
    longer = _solver(epochs=4)
    longer.load_state_dict(straight.state_dict())
    longer.train()
    assert longer.iteration == 4 * longer.iterations_per_epoch


# --- each extra on its own ------------------------------------------------------------


class _Rates(Callback):
    def __init__(self):
        self.rates: list[dict[str, float]] = []

    def on_iteration_end(self, solver, iteration, loss):
        self.rates.append({k: c.get("learning_rate") for k, c in solver.optim_configs.items()})


def test_the_schedule_sets_every_rate_before_every_step():
    rates = _Rates()
    solver = _solver(callbacks=[rates], ema=None, augment=None)
    solver.train()
    total, ipe = solver.num_iterations, solver.iterations_per_epoch
    schedule = make_schedule(SCHEDULE)
    for t, step in enumerate(rates.rates):
        expected = learning_rate_at(0.2, schedule, t, total, ipe)
        assert step["block.conv.W"] == pytest.approx(expected, rel=1e-15)
        assert step["block.bn.beta"] == pytest.approx(4 * expected, rel=1e-15)  # lr_mult
        assert step["whiten.W"] == 0.2  # frozen: never stepped, never rescheduled
    assert solver.learning_rate == pytest.approx(
        learning_rate_at(0.2, schedule, total - 1, total, ipe)
    )


def test_lr_decay_is_the_exponential_schedule_the_classic_way():
    """SPEC's lr_decay multiplies after each epoch; it is the exponential schedule."""
    rates = _Rates()
    solver = _solver(callbacks=[rates], lr_decay=0.7, **dict.fromkeys(EXTRAS))
    solver.train()
    spec, ipe = lr_decay_schedule(0.7), solver.iterations_per_epoch
    for t, step in enumerate(rates.rates):
        expected = learning_rate_at(0.2, spec, t, solver.num_iterations, ipe)
        assert step["head.W"] == pytest.approx(expected, rel=1e-14)
    config = solver.optim_configs["head.W"]
    assert config["inplace"] is True and config["momentum"] == 0.85


def test_frozen_parameters_stay_put_and_groups_set_decay_and_rate():
    groups = [{"params": "head.W", "frozen": True}, {"params": "block.conv.W", "weight_decay": 0.0}]
    solver = _solver(param_groups=groups, ema=None, augment=None, epochs=1)
    before = {k: v.copy() for k, v in solver.model.params.items()}
    solver.train()
    after = solver.training_params()
    np.testing.assert_array_equal(after["head.W"], before["head.W"])
    assert "momentum_buffer" not in solver.optim_configs["head.W"]  # never stepped
    np.testing.assert_array_equal(after["whiten.W"], solver.best_params["whiten.W"])
    assert solver.optim_configs["block.conv.W"]["weight_decay"] == 0.0
    assert solver.optim_configs["block.bn.beta"]["weight_decay"] == 5e-3
    assert not np.array_equal(after["block.conv.W"], before["block.conv.W"])


def test_one_sgd_step_with_a_learning_rate_multiplier():
    data = _data()
    solver = _solver(data, update_rule="sgd", optim_config={"learning_rate": 0.1},
                     param_groups=[{"params": "head.W", "lr_mult": 3.0}],
                     **{k: None for k in ("schedule", "ema", "augment")},
                     batch_size=48, epochs=1)  # fmt: skip
    model = solver.model
    model.init_from_data(data["X_train"])
    w0 = {k: v.copy() for k, v in model.params.items()}
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    solver.train()
    model.params, model.buffers = w0, buffers  # the same batch (all 48) from the start
    _, grads = model.loss(data["X_train"][solver._perm], data["y_train"][solver._perm])
    after = solver.training_params()
    np.testing.assert_allclose(after["head.W"], w0["head.W"] - 0.3 * grads["head.W"], rtol=1e-12)
    np.testing.assert_allclose(
        after["block.conv.W"], w0["block.conv.W"] - 0.1 * grads["block.conv.W"], rtol=1e-12
    )


def test_evaluation_and_the_best_params_use_the_average():
    """Plain EMA (no lookahead): the weights train on, the average is what is checked."""
    ema = {"decay": 0.5, "every": 1, "warmup": False}
    solver = _solver(ema=ema, augment=None, epochs=1, num_train_samples=None)
    solver.train()
    shadow = solver.ema.averages
    for k in solver.model.params:
        np.testing.assert_array_equal(solver.best_params[k], shadow[k])
    assert not np.array_equal(solver.training_params()["head.W"], shadow["head.W"])
    # The recorded accuracies are the average's, running statistics included.
    probe = Network(LAYERS, input_dim=(3, 6, 6), num_classes=3, dtype=np.float64)
    probe.load_state_dict({"params": {k: shadow[k] for k in probe.params},
                           "buffers": {k: shadow[k] for k in probe.buffers}})  # fmt: skip
    scores = probe.loss(solver.X_train)
    assert solver.train_acc_history[-1] == np.mean(scores.argmax(1) == solver.y_train)


def test_lookahead_writes_the_average_back_and_ends_on_it():
    solver = _solver(augment=None)
    solver.train()
    shadow = solver.ema.averages
    for k, w in solver.training_params().items():
        np.testing.assert_array_equal(w, shadow[k], err_msg=k)  # the final copy
    assert solver.ema.num_updates == solver.num_iterations // 2


def test_ema_decay_follows_the_power_schedule():
    seen = []

    class Probe(EMA):
        def update(self, params, decay=None):
            seen.append(decay)
            return super().update(params, decay)

    solver = _solver(augment=None, epochs=1)
    solver.ema = solver.components["ema"] = Probe(0.8, every=2, warmup=False, lookahead=True)
    solver.train()
    total = solver.num_iterations
    assert seen == [pytest.approx(0.8 * (t / total)) for t in range(1, total + 1)]


def test_no_validation_set_best_is_last():
    data = _data()
    data["X_val"], data["y_val"] = data["X_val"][:0], data["y_val"][:0]
    solver = _solver(data, ema=None)
    solver.train()
    assert all(math.isnan(v) for v in solver.val_acc_history)
    assert math.isnan(solver.best_val_acc)
    for k, w in solver.training_params().items():
        np.testing.assert_array_equal(solver.best_params[k], w)


def test_the_solver_initialises_data_dependent_layers_once():
    data = _data()
    solver = _solver(data, epochs=1)
    assert solver.model.data_init_params == ["whiten.W"]
    solver.train()
    assert solver.model.data_init_params == []
    from nndl.nn.init import patch_whitening_weights

    expected = patch_whitening_weights(data["X_train"], 1, 5e-4)
    np.testing.assert_array_equal(solver.model.params["whiten.W"], expected)


def test_augmented_batches_come_from_the_loader():
    solver = _solver(epochs=1, ema=None)
    seen = []
    loss = solver.model.loss

    def spy(X, y=None):
        if y is not None:
            seen.append((X.copy(), y.copy()))
        return loss(X, y)

    solver.model.loss = spy
    solver.train()
    for b, (X, y) in enumerate(seen):
        xb, yb = solver.loader.get_batch(0, b)
        np.testing.assert_array_equal(X, xb)
        np.testing.assert_array_equal(y, yb)
    assert solver.state_dict()["perm"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_decay": 0.5}, "give lr_decay or schedule, not both"),
        ({"schedule": "weekly"}, "unknown schedule name 'weekly'"),
        ({"ema": {"decay": 1.5}}, r"expected ema\['decay'\] to be a number in \[0, 1\)"),
        ({"ema": {"rate": 0.5}}, r"ema has unknown key\(s\) \['rate'\]"),
        ({"augment": ["spin"]}, "unknown augmentation name 'spin'"),
        ({"param_groups": [{"params": "nope*", "lr_mult": 2.0}]}, "matches no parameter"),
        ({"update_rule": lambda w, dw, c: (w, c), "optim_config": {}}, "needs a base learning"),
    ],
)
def test_bad_extras_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=rf"^Solver: .*{message}"):
        _solver(**kwargs)
