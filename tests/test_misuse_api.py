"""The library side of issue 7, in process: notebook fidelity (global random state and
all-array data dicts), parameter plans, checked file reading within bounded memory,
Ctrl-C at step boundaries, image conversion by real range, and pytest's summary line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _cifar import CLASS_NAMES, REPO_ROOT, write_pickle
from _signals import assert_same_solver_state, signal_between_updates

from nndl.callbacks import Callback
from nndl.cnn import ConvNet, ThreeLayerConvNet
from nndl.data import data_fingerprint, get_CIFAR10_data, load_class_names, resolve_data_dir
from nndl.fc_net import FullyConnectedNet, TwoLayerNet
from nndl.gradient_check import eval_numerical_gradient, rel_error
from nndl.io.checkpoint import MAX_FILE_BYTES, CorruptFileError, NpzReader
from nndl.models import MODELS, build_model, load_model, save_model
from nndl.solver import Solver


@pytest.fixture
def global_rng():
    """Leave NumPy's global random state as the test found it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


# --- data: every value an array; 10 classes; data folder checks -------------------------


def test_get_cifar10_data_holds_only_arrays(tiny_cifar, capsys):
    data = get_CIFAR10_data(50, 10, 10, data_dir=tiny_cifar)
    for k in data.keys():  # the CNN notebook's own loop
        print("{}: {}".format(k, data[k].shape))  # noqa: UP032 - as the notebook has it
    assert all(isinstance(v, np.ndarray) for v in data.values())
    assert "class_names: (10,)" in capsys.readouterr().out
    assert data["class_names"].tolist() == load_class_names(tiny_cifar) == CLASS_NAMES


def test_a_nine_class_meta_fails_at_load_naming_the_file(tiny_cifar):
    write_pickle(tiny_cifar / "batches.meta", {"label_names": CLASS_NAMES[:9]})
    with pytest.raises(ValueError, match=r"batches\.meta: expected 10 label_names.*got 9"):
        get_CIFAR10_data(50, 10, 10, data_dir=tiny_cifar)


def test_a_data_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "notes").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"notes \(from the data_dir argument\) is a"):
        resolve_data_dir(tmp_path / "notes", download=False)
    with pytest.raises(ValueError, match="data_dir is empty"):
        resolve_data_dir("", download=False)


def test_data_fingerprint_sees_every_byte_dtype_and_shape():
    rng = np.random.default_rng(0)
    data = {"X_train": rng.standard_normal((4, 3)).astype(np.float32), "y_train": np.arange(4)}
    data.update(X_val=data["X_train"][:2].copy(), y_val=np.arange(2))
    base = data_fingerprint(data)
    assert base == data_fingerprint({k: v.copy() for k, v in data.items()})
    changed = dict(data, X_train=data["X_train"].copy())
    changed["X_train"].reshape(-1).view(np.uint8)[5] ^= 1  # one bit of one value
    assert data_fingerprint(changed) != base
    assert data_fingerprint(dict(data, y_val=np.arange(2, dtype=np.int32))) != base
    assert data_fingerprint(dict(data, X_train=data["X_train"].reshape(3, 4))) != base


# --- seed=None: NumPy's global random state, as the classic API ---------------------------

SMALL = {
    "three_layer_convnet": {"input_dim": (3, 8, 8), "num_filters": 2, "filter_size": 3,
                            "hidden_dim": 5, "use_batchnorm": True},
    "convnet": {"input_dim": (3, 8, 8), "num_filters": (2, 3), "hidden_dims": (4,),
                "dropout": 0.5},
    "fc_net": {"hidden_dims": [6, 5], "input_dim": 12, "use_batchnorm": True, "dropout": 0.5},
    "two_layer_net": {"input_dim": 12, "hidden_dim": 6},
}  # fmt: skip


def _params(model):
    return {k: v.copy() for k, v in model.params.items()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unseeded_models_draw_from_the_global_random_state(name, global_rng):
    np.random.seed(231)
    a = _params(build_model(name, **SMALL[name]))
    np.random.seed(231)
    b = _params(build_model(name, **SMALL[name]))
    c = _params(build_model(name, **SMALL[name]))  # the global state moved on
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.split(".")[-1].startswith("W"))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seeded_models_leave_the_global_random_state_alone(name, global_rng):
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    model = build_model(name, seed=3, **SMALL[name])
    if model.dropout_param is not None:
        model.dropout_param.pop("seed", None)
    X = np.random.default_rng(0).standard_normal((4, *np.atleast_1d(SMALL[name]["input_dim"])))
    model.loss(X, np.arange(4) % 3)
    assert np.array_equal(np.random.get_state()[1], before)


def test_weights_are_the_classic_randn_draws(global_rng):
    np.random.seed(231)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7,
                              dtype=np.float64)  # fmt: skip
    np.random.seed(231)
    W1 = 1e-3 * np.random.randn(3, 3, 3, 3)
    W2 = 1e-3 * np.random.randn(3 * 8 * 8, 7)
    W3 = 1e-3 * np.random.randn(7, 10)
    for key, w in (("W1", W1), ("W2", W2), ("W3", W3)):
        np.testing.assert_array_equal(model.params[key], w)


def test_unseeded_dropout_masks_follow_np_random_seed(global_rng):
    model = FullyConnectedNet([20], input_dim=10, dropout=0.5, dtype=np.float64)
    X, y = np.random.default_rng(1).standard_normal((6, 10)), np.arange(6) % 3
    np.random.seed(7)
    first = model.loss(X, y)[1]["W1"]
    np.random.seed(7)
    again = model.loss(X, y)[1]["W1"]
    other = model.loss(X, y)[1]["W1"]
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_notebook_gradient_check_cell_is_repeatable_and_matches_the_reference(global_rng):
    """The classic ConvolutionalNetworks notebook cell, run twice as written: the same
    errors both times, and the errors the reference notebook printed."""
    reference = {"W1": 1.380104e-04, "W2": 1.822723e-02, "W3": 3.064049e-04,
                 "b1": 3.477652e-05, "b2": 2.516375e-03, "b3": 7.945660e-10}  # fmt: skip

    def setup():
        np.random.seed(231)
        X = np.random.randn(2, 3, 16, 16)
        y = np.random.randint(10, size=2)
        model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16),
                                  hidden_dim=7, dtype=np.float64)  # fmt: skip
        return X, y, model

    X, y, model = setup()
    X2, y2, again = setup()  # a second run of the cell starts from the same numbers
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert all(np.array_equal(v, again.params[k]) for k, v in model.params.items())
    loss, grads = model.loss(X, y)
    errors = {}
    for name in sorted(grads):
        f = lambda _: model.loss(X, y)[0]  # noqa: E731
        num = eval_numerical_gradient(f, model.params[name], verbose=False, h=1e-6)
        errors[name] = rel_error(num, grads[name])
    for name, err in errors.items():
        assert err == pytest.approx(reference[name], rel=0.05, abs=1e-8), name
        assert err <= 2e-2, name  # "relative errors up to the order of e-2"


def test_unseeded_solver_shuffles_follow_np_random_seed(global_rng):
    rng = np.random.default_rng(0)
    data = {"X_train": rng.standard_normal((30, 4)), "y_train": rng.integers(3, size=30)}
    data.update(X_val=data["X_train"][:5], y_val=data["y_train"][:5])

    def run():
        np.random.seed(0)
        model = TwoLayerNet(input_dim=4, hidden_dim=5, num_classes=3, dtype=np.float64)
        solver = Solver(model, data, batch_size=7, num_epochs=2, verbose=False)
        solver.train()
        return solver.loss_history

    assert run() == run()


def test_loading_a_model_leaves_the_global_random_state_alone(tmp_path, global_rng):
    save_model(tmp_path / "m.npz", ThreeLayerConvNet(**SMALL["three_layer_convnet"]))
    np.random.seed(1)
    expected = np.random.rand()
    np.random.seed(1)
    load_model(tmp_path / "m.npz")
    assert np.random.rand() == expected


# --- parameter plans: shapes without allocating ----------------------------------------

PLAN_CASES = [
    ("three_layer_convnet", {}),
    ("three_layer_convnet", {"num_filters": 3, "filter_size": 5, "use_batchnorm": True}),
    ("convnet", {}),
    ("convnet", {"num_filters": (4, 4, 8), "pool_every": 2, "hidden_dims": (6, 5),
                 "use_batchnorm": False, "weight_scale": 0.1}),
    ("fc_net", {"hidden_dims": [7, 6], "use_batchnorm": True, "dropout": 0.5}),
    ("fc_net", {"hidden_dims": []}),
    ("two_layer_net", {}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs"), PLAN_CASES)
def test_param_shapes_are_the_built_models_shapes(name, kwargs):
    built = build_model(name, seed=0, **kwargs)
    planned = MODELS[name].param_shapes(seed=0, **kwargs)
    assert list(planned) == list(built.params)  # the same names in the same order
    assert planned == {k: v.shape for k, v in built.params.items()}


def test_every_registered_model_has_a_plan():
    # load_model's memory bound rests on it; a new model must implement _param_plan.
    for name, cls in MODELS.items():
        assert "_param_plan" in vars(cls), name


def test_param_shapes_allocate_nothing():
    tracemalloc.start()
    shapes = ConvNet.param_shapes(num_filters=[10**6, 10**6], hidden_dims=[10**6])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert shapes["block2.conv.W"] == (10**6, 10**6, 3, 3) and peak < 1 << 20


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (ConvNet, {"num_filters": [0]}, "num_filters entries >= 1, got 0"),
        (ConvNet, {"num_filters": [-4, 8]}, "num_filters entries >= 1, got -4"),
        (ConvNet, {"filter_size": 0}, "filter_size >= 1, got 0"),
        (ConvNet, {"filter_size": 33}, "filter_size at most 32"),
        (ConvNet, {"weight_scale": float("nan")}, "weight_scale to be a finite number"),
        (ThreeLayerConvNet, {"num_filters": 0}, "num_filters >= 1"),
        (ThreeLayerConvNet, {"filter_size": 99}, "filter_size at most 32"),
        (FullyConnectedNet, {"hidden_dims": [0]}, "hidden_dims entries >= 1"),
        (TwoLayerNet, {"weight_scale": float("inf")}, "finite"),
        (TwoLayerNet, {"reg": float("nan")}, "reg to be a finite number"),
        (TwoLayerNet, {"seed": -1}, "seed >= 0"),
    ],
)
def test_bad_model_arguments_are_clear_errors(cls, kwargs, message):
    if cls is FullyConnectedNet:
        kwargs = {"input_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)
    if "seed" not in kwargs and "reg" not in kwargs:  # those are constructor-only checks
        with pytest.raises(ValueError, match=re.escape(message)):
            cls.param_shapes(**kwargs)


# --- reading files: damaged, crafted, bounded ----------------------------------------------


@pytest.fixture
def model_file(tmp_path) -> Path:
    model = ConvNet(input_dim=(3, 8, 8), num_filters=(2, 3), hidden_dims=(4,), seed=0)
    return save_model(tmp_path / "m.npz", model, extra={"epoch": 1})


def test_every_truncation_is_a_corrupt_file_error_naming_the_file(model_file):
    raw = model_file.read_bytes()
    for n in range(0, len(raw), max(1, len(raw) // 97)):
        model_file.write_bytes(raw[:n])
        with pytest.raises(CorruptFileError, match=re.escape(str(model_file))):
            load_model(model_file)


def test_every_bit_flip_is_refused_or_harmless(model_file):
    raw = model_file.read_bytes()
    reference, _ = load_model(model_file)
    # A sample of every region, and every byte of the zip's central directory at the end.
    for pos in sorted({*range(0, len(raw), 11), *range(len(raw) - 400, len(raw))}):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << (pos % 8)
        model_file.write_bytes(bytes(flipped))
        try:
            model, _ = load_model(model_file)
        except ValueError as exc:  # CorruptFileError, or a named mismatch
            assert str(model_file) in str(exc)
        else:  # a flip in a field nobody reads (a zip timestamp, say) changes nothing
            for k, v in reference.params.items():
                assert np.array_equal(model.params[k], v), (pos, k)


def _rewrite_meta(path: Path, edit) -> None:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    edit(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_a_crafted_config_is_refused_before_anything_is_allocated(model_file):
    _rewrite_meta(model_file, lambda m: m["model"]["config"].update(num_filters=[10**6, 10**6]))
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"holds params block1.conv.W of shape \(2, 3, 3, 3\)"):
        load_model(model_file)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20  # the config asks for 36 GB


def test_array_sizes_are_bounded_before_reading(model_file):
    with pytest.raises(CorruptFileError, match="declares more than 1000 bytes"):
        NpzReader("test", model_file, max_bytes=1000)
    with NpzReader("test", model_file) as f:
        assert f.shapes("model/params/")["block1.conv.W"] == (2, 3, 3, 3)
    assert MAX_FILE_BYTES >= 1 << 30  # room for SPEC's reference model and its optimiser


def test_a_header_that_lies_about_its_size_is_refused(model_file):
    with zipfile.ZipFile(model_file) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000,), }".ljust(117)
    raw = b"\x93NUMPY\x01\x00v\x00" + header.encode() + b"\n"
    entries["model/params/block1.conv.b.npy"] = raw + bytes(16)
    with zipfile.ZipFile(model_file, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(CorruptFileError, match=r"block1.conv.b: header says \(10000000000,\)"):
        load_model(model_file)


def test_an_unparsable_header_is_a_corrupt_file(model_file):
    with zipfile.ZipFile(model_file) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,".ljust(117)  # unclosed
    raw = b"\x93NUMPY\x01\x00v\x00" + header.encode() + b"\n"
    entries["model/params/block1.conv.b.npy"] = raw + bytes(8)
    with zipfile.ZipFile(model_file, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(CorruptFileError, match=re.escape(str(model_file))):
        load_model(model_file)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["model"].update(name="resnet"), "names the model 'resnet'"),
        (lambda m: m["model"].update(config=[1, 2]), "config that is not a dict"),
        (lambda m: m["model"]["config"].update(num_filters="x"), "invalid convnet config"),
        (lambda m: m["model"].update(rng={"bit_generator": "seed"}), "bad rng state"),
        (lambda m: m["model"].update(rng={"bit_generator": "PCG64", "state": "?"}), "bad rng"),
        (lambda m: m.update(extra=[1]), "'extra' that is not a dict"),
        (lambda m: m.update(format="other"), "not an nndl file"),
        (lambda m: m.update(version=3), "nndl file version 3"),
        (lambda m: m["model"].pop("name"), "names the model None"),
    ],
)
def test_crafted_metadata_is_refused(model_file, edit, message):
    _rewrite_meta(model_file, edit)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_model(model_file)
    assert str(model_file) in str(info.value)


def _fc_solver(**kw):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(4, size=40)
    data = {"X_train": X[:32], "y_train": y[:32], "X_val": X[32:], "y_val": y[32:]}
    model = FullyConnectedNet([8], input_dim=6, num_classes=4, use_batchnorm=True,
                              dtype=np.float64, seed=0)  # fmt: skip
    return Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                  batch_size=8, num_epochs=2, verbose=False, seed=0, **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a, m: a.update({"solver/perm": a["solver/perm"][::-1] * 0}), "shuffle"),
        (lambda a, m: a.update({"solver/history/loss": a["solver/history/loss"][:-1]}),
         "history/loss"),
        (lambda a, m: a.update({"solver/optim_configs/W1/m": np.zeros(3)}),
         "update-rule state W1/m"),
        (lambda a, m: m["solver"].update(iteration=3), "disagree"),
        (lambda a, m: m["solver"].update(epoch=-1), "solver epoch -1"),
        (lambda a, m: m["solver"]["optim_configs"].pop("W1"), "update-rule settings for W1"),
        (lambda a, m: m["solver"]["optim_configs"]["W1"].update(t=float("nan")),
         "bad update-rule"),
        (lambda a, m: m["solver"].update(rng={"bit_generator": "default_rng"}), "solver rng"),
        (lambda a, m: m["model"].update(rng={"bit_generator": "seed"}), "bad rng state"),
        (lambda a, m: a.pop("solver/history/val_acc"), "history/val_acc"),
        (lambda a, m: m.update(kind="model"), "not a Solver checkpoint"),
    ],
)  # fmt: skip
def test_a_crafted_checkpoint_is_refused_and_changes_nothing(tmp_path, edit, message):
    solver = _fc_solver()
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    edit(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    fresh = _fc_solver()
    before = _params(fresh.model)
    with pytest.raises(ValueError, match=re.escape(message)):
        fresh.load_checkpoint(path)
    assert fresh.iteration == 0 and fresh.loss_history == []
    assert all(np.array_equal(fresh.model.params[k], v) for k, v in before.items())


# --- Ctrl-C takes effect between steps ---------------------------------------------------


def _bn_solver(**kw):
    """A batch-norm ConvNet with dropout: running statistics and the model's RNG move."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3, 8, 8)), rng.integers(4, size=30)
    data = {"X_train": X[:24], "y_train": y[:24], "X_val": X[24:], "y_val": y[24:]}
    model = ConvNet(input_dim=(3, 8, 8), num_filters=(3,), hidden_dims=(5,), num_classes=4,
                    dropout=0.8, dtype=np.float64, seed=0)  # fmt: skip
    kw.setdefault("update_rule", "adam")
    return Solver(model, data, optim_config={"learning_rate": 1e-2}, batch_size=6,
                  num_epochs=3, verbose=False, seed=0, **kw)  # fmt: skip


def _interrupt():
    os.kill(os.getpid(), signal.SIGINT)


class _At(Callback):
    def __init__(self, hook, when):
        self.hook, self.when = hook, when

    def on_train_begin(self, solver):
        if self.hook == "begin":
            _interrupt()

    def on_epoch_end(self, solver, epoch, logs):
        if self.hook == "epoch" and epoch == self.when:
            _interrupt()


def _interrupt_in_forward(solver, step):
    loss, calls = solver.model.loss, [0]

    def wrapped(X, y=None):
        out = loss(X, y)
        if y is not None:
            calls[0] += 1
            if calls[0] == step:
                _interrupt()  # batch norm has moved its running statistics already
        return out

    solver.model.loss = wrapped


@pytest.mark.parametrize(
    ("where", "stops_at"),
    [("forward", 5), ("update", 7), ("epoch", 8), ("begin", 0)],
)
def test_ctrl_c_stops_at_a_step_boundary_and_resumes_exactly(tmp_path, where, stops_at):
    straight = _bn_solver(update_rule=signal_between_updates(signal.SIGINT, 10**9))
    straight.train()
    if where == "update":
        first = _bn_solver(update_rule=signal_between_updates(signal.SIGINT, 7))
    else:
        first = _bn_solver(callbacks=[_At(where, 2)])
    if where == "forward":
        _interrupt_in_forward(first, 5)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert first.iteration == stops_at  # the interrupted step was completed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    path = first.save_checkpoint(tmp_path / "c.npz")
    resumed = _bn_solver(update_rule=signal_between_updates(signal.SIGINT, 10**9))
    resumed.load_checkpoint(path)
    resumed.train()
    assert_same_solver_state(straight, resumed)


def test_training_in_another_thread_leaves_signals_alone():
    solver = _bn_solver()
    errors = []
    thread = threading.Thread(target=lambda: _run(solver, errors))
    thread.start()
    thread.join(60)
    assert not errors and solver.iteration == solver.num_iterations


def _run(solver, errors):
    try:
        solver.train()
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


# --- nndl predict: images by their real range -------------------------------------------


def _gray(n=32):
    return (np.arange(n * n).reshape(n, n) * 7 % 256).astype(np.uint8)


def test_sixteen_bit_and_float_images_read_as_their_eight_bit_original(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from nndl.cli.inputs import load_images

    g = _gray()
    Image.fromarray(g).save(tmp_path / "g8.png")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(g.astype(np.float32) / 255, mode="F").save(tmp_path / "f.tif")
    Image.fromarray(g.astype(np.float32), mode="F").save(tmp_path / "f255.tif")
    paths = [tmp_path / n for n in ("g8.png", "g16.png", "f.tif", "f255.tif")]
    X = load_images(paths, (32, 32))
    assert X.shape == (4, 3, 32, 32) and X[0].max() == g.max()
    np.testing.assert_array_equal(X[1], X[0])
    np.testing.assert_allclose(X[2], X[0], atol=1e-4)
    np.testing.assert_array_equal(X[3], X[0])
    big = np.repeat(np.repeat(g, 2, 0), 2, 1)
    Image.fromarray(big).save(tmp_path / "b8.png")
    Image.fromarray(big.astype(np.uint16) * 257).save(tmp_path / "b16.png")
    small = load_images([tmp_path / "b8.png", tmp_path / "b16.png"], (32, 32))
    np.testing.assert_allclose(small[1], small[0], atol=1.0)  # resized in float vs 8-bit


# --- pytest prints its summary line --------------------------------------------------------


def test_pytest_q_prints_the_summary_line(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", str(REPO_ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         str(tmp_path / "test_one.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^1 passed", proc.stdout, re.MULTILINE), proc.stdout
