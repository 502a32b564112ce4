"""Run folders written by the released nndl (tests/data/release-a8612a8, file format 1 and
the hand-wired ConvNet's W1/b1/gamma1 names) still evaluate, predict, summarise and
resume with today's code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _cifar import REPO_ROOT, write_synthetic_cifar10

from nndl.cli import main
from nndl.cnn import ConvNet, ThreeLayerConvNet
from nndl.models import load_model
from nndl.models.legacy import numbered_names
from nndl.solver import Solver

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from hand_wired_convnet import HandWiredConvNet  # noqa: E402

RELEASE = Path(__file__).resolve().parent / "data" / "release-a8612a8"
KINDS = ["convnet", "three_layer_convnet"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    # The data the fixtures were trained on (see their README).
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=20, n_test=20)


@pytest.fixture
def run(tmp_path, request) -> Path:
    folder = tmp_path / request.param
    shutil.copytree(RELEASE / request.param, folder)
    return folder


def _raw(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


@pytest.mark.parametrize("name", ["best_model.npz", "last_model.npz", "checkpoint.npz"])
def test_a_released_convnet_loads_renamed_and_computes_as_before(name):
    meta, raw = _raw(RELEASE / "convnet" / name)
    assert meta["version"] == 1 and "params/W1" in raw
    model, extra = load_model(RELEASE / "convnet" / name)
    assert type(model) is ConvNet and "block1.conv.W" in model.params
    config = meta["config"]
    names = numbered_names(ConvNet.param_plan(**config), ConvNet.buffer_plan(**config))
    stored = {
        k.split("/", 1)[1]: v for k, v in raw.items() if k.split("/")[0] in ("params", "state")
    }
    for old, new in names.items():
        got = model.params[new] if new in model.params else model.buffers[new]
        assert np.array_equal(got, stored[old]), (old, new)
    # The hand-wired ConvNet with the stored arrays scores as the loaded one does.
    config = {k: v for k, v in meta["config"].items() if k != "dtype"}
    ref = HandWiredConvNet(**config)
    ref.params = {k: v for k, v in stored.items() if k in ref.params}
    ref.load_state_arrays({k: v for k, v in stored.items() if k.startswith("running_")})
    X = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(model.loss(X), ref.loss(X))
    assert extra is None or extra["epoch"] == 1


def test_a_released_three_layer_convnet_keeps_its_names():
    model, extra = load_model(RELEASE / "three_layer_convnet" / "best_model.npz")
    assert type(model) is ThreeLayerConvNet and extra["epoch"] == 1
    _, raw = _raw(RELEASE / "three_layer_convnet" / "best_model.npz")
    for key, value in model.params.items():
        assert np.array_equal(value, raw[f"params/{key}"]), key


@pytest.mark.parametrize("run", KINDS, indirect=True)
def test_a_released_run_evaluates_predicts_and_summarises(run, cifar, capsys, tmp_path):
    assert main(["evaluate", str(run), "--data-dir", str(cifar)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and (run / "evaluation.json").exists()
    image = pytest.importorskip("PIL.Image")
    image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "grey.png")
    assert main(["predict", str(run), str(tmp_path / "grey.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'grey.png'}: ")
    assert main(["summary", str(run)]) == 0
    assert "params:" in capsys.readouterr().out


@pytest.mark.parametrize("run", KINDS, indirect=True)
def test_a_released_run_resumes(run, cifar, capsys):
    before = (run / "metrics.jsonl").read_text().splitlines()
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", "--data-dir", str(cifar)]
    assert main([*args, "--quiet", "--no-plots"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and json.loads(before[0]) == metrics[0]
    assert metrics[1]["iteration"] == 8
    meta, _ = _raw(run / "checkpoint.npz")
    assert meta["version"] == 2 and meta["solver"]["iteration"] == 8  # written anew
    config = json.loads((run / "config.json").read_text())
    assert len(config["resumed"]) == 1 and "fingerprint" in config["data"]
    capsys.readouterr()


def test_a_released_checkpoint_restores_the_solver_state(cifar):
    meta, raw = _raw(RELEASE / "convnet" / "checkpoint.npz")
    model = ConvNet(**meta["config"])
    X = np.zeros((80, 3, 32, 32), np.float32)
    data = {"X_train": X, "y_train": np.zeros(80, int), "X_val": X[:20], "y_val": np.zeros(20, int)}
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 2e-3},
                    batch_size=20, verbose=False)  # fmt: skip
    solver.load_checkpoint(RELEASE / "convnet" / "checkpoint.npz")
    assert (solver.epoch, solver.iteration) == (1, 4)
    assert solver.loss_history == raw["history/loss"].tolist()
    perm = solver.state_dict()["perm"]
    assert np.array_equal(perm, raw["perm"]) if "perm" in raw else perm is None
    m = solver.optim_configs["block2.bn.beta"]["m"]
    assert np.array_equal(m, raw["optim/beta2/m"])
    assert solver.optim_configs["fc2.W"]["t"] == meta["solver"]["optim_scalars"]["W4"]["t"]
    assert np.array_equal(solver.best_params["fc1.W"], raw["best/W3"])
