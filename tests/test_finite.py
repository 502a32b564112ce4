"""Numbers are checked for being finite: a model with a NaN weight, or training data with a
NaN pixel, is refused with the array's name (and the first bad index) instead of giving nan
probabilities, a 10% accuracy or NaN running statistics; labels of the wrong shape or range
are refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _cifar import write_synthetic_cifar10
from _cli import run_cli

from nndl.checks import NonFiniteError, check_finite
from nndl.cli import evaluate as evaluate_cli
from nndl.fc_net import TwoLayerNet
from nndl.models import load_model, save_model
from nndl.solver import Solver

SIZES = ["--num-training", "40", "--num-validation", "20", "--num-test", "20"]
NET = ["--num-filters", "2", "--hidden-dims", "4", "--batch-size", "20", "--epochs", "1"]
QUIET = ["--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("finite")
    data = write_synthetic_cifar10(root / "data", n_per_batch=20, n_test=20)
    run = root / "run"
    code, _, err = run_cli("train", "--data-dir", data, "--out", run, *SIZES, *NET, *QUIET)
    assert code == 0, err
    return run, data


def _poisoned(trained, tmp_path: Path, group: str = "params") -> tuple[Path, str]:
    """A copy of the run whose best model holds a NaN in its first array of ``group``."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    model, extra = load_model(run / "best_model.npz")
    arrays = model.params if group == "params" else model.state_arrays()
    name = sorted(arrays)[0]
    if group == "params":
        model.params[name].flat[1] = np.nan
    else:
        bad = {k: v.copy() for k, v in arrays.items()}
        bad[name].flat[0] = np.inf
        model.load_state_arrays(bad)
    save_model(run / "best_model.npz", model, extra)
    return run, name


# --- load_model -------------------------------------------------------------------------


def test_load_model_refuses_a_nan_weight_by_name_and_loads_it_on_request(trained, tmp_path):
    run, name = _poisoned(trained, tmp_path)
    with pytest.raises(NonFiniteError, match=rf"parameter '{name}' holds a non-finite value"):
        load_model(run / "best_model.npz")
    with pytest.raises(ValueError, match="allow_nonfinite=True"):
        load_model(run / "best_model.npz")
    model, _ = load_model(run / "best_model.npz", allow_nonfinite=True)
    assert np.isnan(model.params[name]).sum() == 1


def test_load_model_refuses_a_non_finite_running_statistic(trained, tmp_path):
    model, _ = load_model(trained[0] / "best_model.npz")
    if not model.state_arrays():
        pytest.skip("the trained model has no running statistics")
    run, name = _poisoned(trained, tmp_path, group="buffers")
    with pytest.raises(NonFiniteError, match=rf"running statistic '{name}'.*\(inf\)"):
        load_model(run / "best_model.npz")
    load_model(run / "best_model.npz", allow_nonfinite=True)


def test_a_finite_model_still_loads(trained):
    model, extra = load_model(trained[0] / "best_model.npz")
    assert all(np.isfinite(v).all() for v in model.params.values())


# --- the commands -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "summary"])
def test_the_commands_refuse_a_nan_model_with_one_error_line(trained, tmp_path, command):
    run, name = _poisoned(trained, tmp_path)
    before = (run / "best_model.npz").read_bytes()
    argv = {
        "predict": ["predict", run, tmp_path / "unread.png"],
        "evaluate": ["evaluate", run],
        "export": ["export", run, "--output", tmp_path / "m.onnx"],
        "summary": ["summary", run],
    }[command]
    if command == "export":
        pytest.importorskip("onnx")
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert err.startswith(f"nndl {command}: error:") and len(err.strip().splitlines()) == 1
    assert f"'{name}'" in err and "--allow-nonfinite" in err
    assert (run / "best_model.npz").read_bytes() == before
    assert not (run / "evaluation.json").exists()
    assert not (tmp_path / "m.onnx").exists()


def test_summary_and_predict_take_a_nan_model_with_allow_nonfinite(trained, tmp_path):
    run, _ = _poisoned(trained, tmp_path)
    code, out, err = run_cli("summary", run, "--allow-nonfinite")
    assert code == 0, err
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", run, tmp_path / "x.png", "--allow-nonfinite")
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'x.png'}: ")


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "summary"])
def test_allow_nonfinite_is_documented_in_the_help(command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0 and "--allow-nonfinite" in out and "NaN" in out


def test_a_nan_mean_image_is_refused(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    with np.load(run / "preprocess.npz") as f:
        arrays = dict(f)
    arrays["mean_image"].flat[5] = np.nan
    np.savez(run / "preprocess.npz", **arrays)
    code, _, err = run_cli("evaluate", run)
    assert code == 2 and "mean_image" in err and "NaN" in err


def test_evaluate_refuses_non_finite_test_images(trained, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    load = evaluate_cli.load_cifar

    def poisoned(*a, **k):
        data, info = load(*a, **k)
        data["X_test"] = data["X_test"].astype(np.float32)
        data["X_test"][3, 1, 2, 4] = np.nan
        return data, info

    monkeypatch.setattr(evaluate_cli, "load_cifar", poisoned)
    code, out, err = run_cli("evaluate", run, "--data-dir", trained[1])
    assert code == 2 and err.startswith("nndl evaluate: error:")
    assert "X_test holds a non-finite value (nan) at index (3, 1, 2, 4)" in err
    assert not (run / "evaluation.json").exists()


# --- the Solver -------------------------------------------------------------------------


def _data(n: int = 20, d: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.normal(size=(n, d)),
        "y_train": rng.integers(0, classes, n),
        "X_val": rng.normal(size=(n // 2, d)),
        "y_val": rng.integers(0, classes, n // 2),
    }


def _solver(data, **kwargs):
    model = TwoLayerNet(input_dim=6, hidden_dim=4, num_classes=3, seed=0)
    return Solver(model, data, num_epochs=1, batch_size=10, verbose=False, **kwargs)


@pytest.mark.parametrize(
    ("key", "index", "value"), [("X_train", (12, 3), np.nan), ("X_val", (4, 0), -np.inf)]
)
def test_the_solver_refuses_non_finite_data_naming_the_first_index(key, index, value):
    data = _data()
    data[key][index] = value
    data[key][index[0] + 1, 5] = np.nan  # a later one is not the one named
    with pytest.raises(NonFiniteError, match=rf"^Solver: data\['{key}'\] holds a non-finite "
                       rf"value \({value}\) at index \({index[0]}, {index[1]}\)"):  # fmt: skip
        _solver(data)


def test_the_solver_still_takes_finite_and_integer_data():
    _solver(_data()).train()
    data = _data()
    data["X_train"] = (data["X_train"] * 10).astype(np.int64)
    _solver(data)


def test_the_solver_refuses_one_hot_labels_by_name():
    data = _data()
    data["y_train"] = np.eye(3, dtype=np.int64)[data["y_train"]]
    with pytest.raises(ValueError, match=r"data\['y_train'\] of shape \(20,\).*one-hot"):
        _solver(data)


@pytest.mark.parametrize(("key", "bad"), [("y_train", 3), ("y_val", -1)])
def test_the_solver_refuses_labels_out_of_range_by_name(key, bad):
    data = _data()
    data[key][2] = bad
    with pytest.raises(ValueError, match=rf"labels in \[0, 3\), got data\['{key}'\]"):
        _solver(data)


def test_float_labels_are_refused_by_name():
    data = _data()
    data["y_val"] = data["y_val"].astype(np.float64)
    with pytest.raises(TypeError, match=r"integer labels data\['y_val'\]"):
        _solver(data)


def test_check_finite_scans_in_blocks_and_finds_the_first_bad_index(monkeypatch):
    import nndl.checks as checks

    monkeypatch.setattr(checks, "_FINITE_BLOCK", 10)
    x = np.zeros((30, 2, 5), np.float32)
    x[17, 1, 3] = np.inf
    x[29, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"^f: a holds a non-finite value \(inf\) at index "
                       r"\(17, 1, 3\)"):  # fmt: skip
        check_finite("f", "a", x[:, :, :])
    check_finite("f", "a", x[:17])


# --- resuming -----------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["params", "best_params", "optim_configs"])
def test_a_solver_state_with_a_nan_weight_is_refused_by_name(part):
    """Training on from NaN weights (or NaN best weights, or update-rule state) makes
    every later step NaN: the state is refused, naming the array and the index."""
    data = _data()
    solver = _solver(data, update_rule="adam")
    solver.train()
    state = solver.state_dict()
    arrays = {"params": state["model"]["params"], "best_params": state["best_params"],
              "optim_configs": state["optim_configs"]["W1"]}[part]  # fmt: skip
    name = "W1" if part != "optim_configs" else "m"
    arrays[name] = arrays[name].copy()
    arrays[name].flat[5] = np.nan
    other = _solver(data, update_rule="adam")
    before = {k: v.copy() for k, v in other.model.params.items()}
    with pytest.raises(NonFiniteError, match=rf"'{name}' holds a non-finite value \(nan\)"):
        other.load_state_dict(state)
    for k, v in before.items():  # refused before anything changed
        np.testing.assert_array_equal(other.model.params[k], v)


def test_resume_refuses_a_checkpoint_with_a_nan_weight(trained, tmp_path):
    from nndl.io.checkpoint import read_tree, save_tree

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    tree = read_tree("test", run / "checkpoint.npz")
    tree.pop("version", None)
    params = tree["model"]["params"]
    name = sorted(params)[0]
    params[name].flat[0] = np.inf
    save_tree(run / "checkpoint.npz", tree)
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", 2, *QUIET)
    assert code == 2, err
    assert err.startswith("nndl train: error:") and f"'{name}' holds a non-finite" in err
