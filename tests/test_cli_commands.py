"""The commands of the architecture rework: ``nndl train --arch FILE.json``, ``nndl summary``
and ``nndl export`` (its ONNX output is checked in tests/test_export_onnx.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from _cifar import write_synthetic_cifar10  # noqa: E402
from _cli import run_cli  # noqa: E402

from nndl import cli  # noqa: E402
from nndl.cli.flags import DEFAULTS, FLAGS, MODEL_FLAGS, SETTING_RULES  # noqa: E402
from nndl.models import load_model  # noqa: E402
from nndl.network import Network  # noqa: E402

SIZES = ["--num-training", "80", "--num-validation", "20", "--num-test", "20"]
SPEC = [
    {"type": "conv_bn_relu_pool", "filters": 4},
    {"type": "residual", "body": [{"type": "conv2d", "filters": 4, "bias": False},
                                  "batchnorm2d", "relu"]},
    "global_avgpool",
    {"type": "linear", "units": 10},
]  # fmt: skip


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=20, n_test=20)


@pytest.fixture(scope="module")
def arch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "net.json"
    path.write_text(json.dumps(SPEC))
    return path


@pytest.fixture(scope="module")
def arch_run(tmp_path_factory, cifar, arch) -> Path:
    run = tmp_path_factory.mktemp("runs") / "arch"
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, "--arch", arch, *SIZES,
                           "--batch-size", "20", "--epochs", "1", "--quiet")  # fmt: skip
    assert code == 0, err
    return run


def test_train_arch_trains_the_spec_and_records_it(arch_run):
    config = json.loads((arch_run / "config.json").read_text())
    assert config["settings"]["model"] == "network" and config["settings"]["arch"] == SPEC
    assert "num_filters" not in config["settings"]  # the default net's settings do not apply
    assert config["model"]["name"] == "network"
    model, extra = load_model(arch_run / "best_model.npz")
    assert type(model) is Network and extra["epoch"] == 1
    assert "res1.body.conv1.W" in model.params
    assert (arch_run / "filters.png").stat().st_size > 1000  # the first conv's filters


def test_an_arch_run_resumes_without_repeating_the_flag(arch_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(arch_run, run)
    code, out, err = run_cli("train", "--out", run, "--resume", "--epochs", "2", "--quiet",
                             "--no-plots")  # fmt: skip
    assert code == 0, err
    assert "epoch 2/2" in out


def test_summary_of_a_spec_counts_every_layer(arch, capsys):
    code, out, err = run_cli("summary", "--arch", arch, "--batch-size", "8")
    assert code == 0, err
    net = Network(SPEC)
    data = net.summary_data(8)
    assert f"params: {data['total_params']:,}" in out
    assert f"forward FLOPs per example: {data['total_flops']:,}" in out
    for row in data["rows"]:
        assert row["path"] in out
    assert "activations for a batch of 8" in out
    code, out, _ = run_cli("summary", "--arch", arch, "--input-dim", "3", "16", "16")
    assert code == 0 and "input (3, 16, 16)" in out


def test_summary_of_a_run_folder(arch_run):
    code, out, err = run_cli("summary", arch_run)
    assert code == 0, err
    model, _ = load_model(arch_run / "best_model.npz")
    assert f"params: {model.summary_data()['total_params']:,}" in out
    assert out.startswith("network from ")


def test_summary_of_a_hand_written_model(tmp_path, cifar):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, "--model",
                           "three_layer_convnet", "--num-filters", "2", "--hidden-dims", "3",
                           *SIZES, "--batch-size", "20", "--epochs", "1", "--quiet",
                           "--no-plots")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli("summary", run)
    assert code == 0, err
    # conv 2x3x7x7+2, hidden 2*16*16*3+3, output 3*10+10
    assert f"params: {2 * 3 * 49 + 2 + 512 * 3 + 3 + 30 + 10:,}" in out


def test_export_names_the_missing_extra(arch_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = run_cli("export", arch_run, "--output", tmp_path / "m.onnx")
    assert code == 2 and "nndl export: error:" in err and "pip install 'nndl[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()


def test_one_table_drives_the_parser_defaults_and_rules():
    parser = cli.entry.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions} - {"help"}
    assert dests == {f.key for f in FLAGS}
    assert set(DEFAULTS) <= dests and set(SETTING_RULES) <= dests
    assert "arch" in MODEL_FLAGS and "arch" not in DEFAULTS
    args = parser.parse_args(["train", "--lr", "0.1"])
    assert args.lr == 0.1 and args.num_filters is None  # defaults come from DEFAULTS later
    assert all(np.isfinite(v) for v in (DEFAULTS["lr"], DEFAULTS["lr_decay"]))
