"""Atomic .npz files, model save/load, and solver checkpoints that resume exactly."""

import json
import os

import numpy as np
import pytest

import nndl.io.checkpoint as ckpt
from nndl.callbacks import Callback
from nndl.cnn import ConvNet
from nndl.fc_net import FullyConnectedNet
from nndl.io.checkpoint import atomic_savez
from nndl.models import load_model, save_model
from nndl.solver import Solver


def _data(N=40, D=6, C=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = 2 * rng.standard_normal((C, D))
    y = rng.integers(C, size=N + 12)
    X = centers[y] + rng.standard_normal((N + 12, D))
    return {"X_train": X[:N], "y_train": y[:N], "X_val": X[N:], "y_val": y[N:]}


def _model(seed=0):
    model = FullyConnectedNet([10, 8], input_dim=6, num_classes=4, dropout=0.8,
                              use_batchnorm=True, weight_scale=0.1, dtype=np.float64,
                              seed=seed)  # fmt: skip
    # Fresh masks from model.rng, whose state the checkpoint must carry over.
    del model.dropout_param["seed"]
    return model


def _solver(model, seed=0, **kw):
    return Solver(model, _data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
                  lr_decay=0.9, batch_size=8, num_epochs=3, num_train_samples=20,
                  verbose=False, seed=seed, **kw)  # fmt: skip


class StopAfter(Callback):
    def __init__(self, epoch=None, iteration=None):
        self.epoch, self.iteration = epoch, iteration

    def on_iteration_end(self, solver, iteration, loss):
        if iteration == self.iteration:
            solver.stop_training = True

    def on_epoch_end(self, solver, epoch, logs):
        if epoch == self.epoch:
            solver.stop_training = True


def _assert_same_run(a, b):
    assert a.loss_history == b.loss_history
    assert a.train_acc_history == b.train_acc_history
    assert a.val_acc_history == b.val_acc_history
    assert (a.epoch, a.iteration, a.best_val_acc) == (b.epoch, b.iteration, b.best_val_acc)
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
        assert np.array_equal(a.training_params()[k], b.training_params()[k]), k
        assert np.array_equal(a.optim_configs[k]["m"], b.optim_configs[k]["m"]), k
        assert a.optim_configs[k]["t"] == b.optim_configs[k]["t"]
    for k, v in a.model.state_arrays().items():
        assert np.array_equal(v, b.model.state_arrays()[k]), k


@pytest.mark.parametrize("stop", [{"epoch": 1}, {"iteration": 7}], ids=["epoch", "mid-epoch"])
def test_resume_gives_the_same_run(tmp_path, stop):
    full = _solver(_model())
    full.train()

    first = _solver(_model(), callbacks=[StopAfter(**stop)])
    first.train()
    assert first.iteration < full.iteration
    path = first.save_checkpoint(tmp_path / "run.npz")

    resumed = _solver(_model(seed=99), seed=42)  # seeds are overwritten by the checkpoint
    resumed.load_checkpoint(path)
    resumed.train()
    _assert_same_run(full, resumed)
    # The interrupted solver itself also continues the run.
    first.train()
    _assert_same_run(full, first)


def test_epoch_checkpoints_resume(tmp_path):
    full = _solver(_model(), checkpoint_name=str(tmp_path / "ck"))
    full.train()
    assert sorted(os.listdir(tmp_path)) == [f"ck_epoch_{e}.npz" for e in (1, 2, 3)]
    resumed = _solver(_model(seed=5))
    resumed.load_checkpoint(tmp_path / "ck_epoch_2.npz")
    assert resumed.epoch == 2 and len(resumed.val_acc_history) == 3
    resumed.train()
    _assert_same_run(full, resumed)


def test_checkpoint_has_no_pickles_and_checks_the_model(tmp_path):
    solver = _solver(_model())
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz", extra={"note": "x"})
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
        meta = json.loads(str(f["meta"]))
        assert meta["kind"] == "checkpoint" and meta["solver"]["iteration"] == 15
    other = Solver(FullyConnectedNet([3], input_dim=6, num_classes=4), _data(), batch_size=8,
                   update_rule="adam", verbose=False)  # fmt: skip
    with pytest.raises(ValueError, match="holds params"):
        other.load_checkpoint(path)
    wrong_batch = Solver(_model(), _data(), batch_size=4, update_rule="adam", verbose=False)
    with pytest.raises(ValueError, match="iterations per epoch"):
        wrong_batch.load_checkpoint(path)
    model, extra = load_model(path)  # a checkpoint also loads as a model
    assert extra == {"note": "x"}
    assert np.array_equal(model.params["W1"], solver.training_params()["W1"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: _model(),
        lambda: ConvNet(input_dim=(3, 8, 8), num_filters=(2, 3), hidden_dims=(5,), seed=1),
    ],
    ids=["fc_net", "convnet"],
)
def test_save_model_load_model_round_trip(tmp_path, make):
    model = make()
    rng = np.random.default_rng(0)
    shape = (6, *model.config["input_dim"]) if "num_filters" in model.config else (6, 6)
    X, y = rng.standard_normal(shape), rng.integers(4, size=6)
    for _ in range(3):  # move the running statistics away from their initial values
        model.loss(X, y)
    path = save_model(tmp_path / "m", model, extra={"classes": ["a", "b"]})
    assert path.name == "m.npz"
    loaded, extra = load_model(path)
    assert extra == {"classes": ["a", "b"]}
    assert type(loaded) is type(model) and loaded.config == model.config
    assert np.array_equal(loaded.loss(X), model.loss(X))  # test mode: same scores
    assert all(v.dtype == model.dtype for v in loaded.params.values())
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state


def test_atomic_savez_leaves_no_temp_files(tmp_path):
    path = atomic_savez(tmp_path / "a.npz", x=np.arange(3), meta=np.array("{}"))
    assert os.listdir(tmp_path) == ["a.npz"]
    with np.load(path, allow_pickle=False) as f:
        assert f["x"].tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="object array"):
        atomic_savez(tmp_path / "b.npz", x=np.array([{}], dtype=object))
    assert os.listdir(tmp_path) == ["a.npz"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_savez(tmp_path / "a.npz", x=np.arange(3))
    real = np.lib.format.write_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_savez(path, x=np.arange(5), y=np.ones(2))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["a.npz"]
    with np.load(path, allow_pickle=False) as f:
        assert f["x"].tolist() == [0, 1, 2]


# --- state dicts in memory, and the tree format ------------------------------------------


class Counter:
    """A stand-in for a data loader or a schedule: a component with a state dict."""

    def __init__(self):
        self.count = 0

    def state_dict(self):
        return {"count": self.count, "seen": np.arange(self.count)}

    def load_state_dict(self, state):
        if not isinstance(state.get("count"), int):
            raise ValueError(f"Counter.load_state_dict: bad count {state.get('count')!r}")
        self.count = state["count"]


class Tick(Callback):
    def __init__(self, counter):
        self.counter = counter

    def on_iteration_end(self, solver, iteration, loss):
        self.counter.count += 1


def _with_counter(model, **kw):
    counter = Counter()
    solver = _solver(model, callbacks=[Tick(counter), *kw.pop("callbacks", [])], **kw)
    solver.components["counter"] = counter
    return solver


@pytest.mark.parametrize("stop", [{"epoch": 1}, {"iteration": 7}], ids=["epoch", "mid-epoch"])
def test_solver_state_dict_round_trip_continues_bit_identically(tmp_path, stop):
    full = _with_counter(_model())
    full.train()
    first = _with_counter(_model(), callbacks=[StopAfter(**stop)])
    first.train()
    state = first.state_dict()
    resumed = _with_counter(_model(seed=99), seed=42)
    resumed.load_state_dict(state)
    assert resumed.components["counter"].count == first.iteration
    resumed.train()
    _assert_same_run(full, resumed)
    assert resumed.components["counter"].count == full.components["counter"].count
    # The state is a copy: training the first solver on changes nothing in it.
    first.train()
    resumed2 = _with_counter(_model(seed=7))
    resumed2.load_state_dict(state)
    resumed2.train()
    _assert_same_run(full, resumed2)
    # And the same through a file, components included.
    path = first.save_checkpoint(tmp_path / "c.npz")
    again = _with_counter(_model(seed=3))
    again.load_checkpoint(path)
    assert again.components["counter"].count == full.components["counter"].count


def test_a_refused_component_state_undoes_the_model(tmp_path):
    solver = _with_counter(_model())
    solver.train()
    state = solver.state_dict()
    state["components"]["counter"]["count"] = "many"
    fresh = _with_counter(_model(seed=5))
    before = fresh.model.state_dict()
    with pytest.raises(ValueError, match="component 'counter'.*bad count"):
        fresh.load_state_dict(state)
    for k, v in before["params"].items():
        assert np.array_equal(fresh.model.params[k], v), k
    assert fresh.iteration == 0
    with pytest.raises(ValueError, match=r"components \[\]; expected \['counter'\]"):
        fresh.load_state_dict({**state, "components": {}})


def test_model_state_dict_holds_params_buffers_and_rng():
    model = _model(seed=3)
    state = model.state_dict()
    assert set(state) == {"params", "buffers", "rng"}
    assert set(state["buffers"]) == {"running_mean1", "running_var1", "running_mean2",
                                     "running_var2"}  # fmt: skip
    model.rng.random(5)  # move the Generator; loading puts it back
    state["params"]["W1"][...] = 0  # a copy: the model keeps its own
    assert np.any(model.params["W1"])
    model.load_state_dict(state)
    assert not np.any(model.params["W1"])
    assert model.rng.bit_generator.state == state["rng"]
    with pytest.raises(ValueError, match="W1 to be a float array"):
        model.load_state_dict(
            {**state, "params": {**state["params"], "W1": np.zeros((6, 10), int)}}
        )


def test_a_tree_round_trips_and_mixed_leaves_stay_apart(tmp_path):
    tree = {
        "a": {"x": np.arange(3), "y": 1.5, "deep": {"z": np.ones((2, 2), np.float32)}},
        "names": ["p", "q"],
        "layers": [{"type": "conv2d", "filters": 4}],
        "none": None,
        "empty": {},
        "scalar": np.float64(2.5),
    }
    path = ckpt.save_tree(tmp_path / "t", tree)
    assert path.name == "t.npz"
    seen = {}
    back = ckpt.read_tree("test", path, check=lambda outline: seen.update(outline))
    assert seen["a"]["x"] == ckpt.StoredArray((3,), np.dtype(int))
    assert back["version"] == ckpt.VERSION and "format" not in back
    assert np.array_equal(back["a"]["x"], np.arange(3)) and back["a"]["y"] == 1.5
    assert back["a"]["deep"]["z"].dtype == np.float32
    assert back["names"] == ["p", "q"] and back["layers"] == tree["layers"]
    assert back["none"] is None and back["empty"] == {} and back["scalar"] == 2.5
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save_tree(tmp_path / "u", {"version": 1})
    with pytest.raises(TypeError, match="a/b is a object array|expected numbers"):
        ckpt.save_tree(tmp_path / "u", {"a": {"b": np.array(["s"])}})
    with pytest.raises(TypeError, match="expected a name without '/'"):
        ckpt.save_tree(tmp_path / "u", {"a/b": 1})
    with pytest.raises(TypeError, match="a is a set"):
        ckpt.save_tree(tmp_path / "u", {"a": {1, 2}})

    def refuse(outline):
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        ckpt.read_tree("test", path, check=refuse)
    meta = np.array(json.dumps({"format": "nndl", "version": 2, "a": 1}))
    np.savez(tmp_path / "clash.npz", meta=meta, **{"a/b": np.zeros(2)})
    with pytest.raises(ckpt.CorruptFileError, match="'a/b' lies under a JSON value"):
        ckpt.read_tree("test", tmp_path / "clash.npz")
