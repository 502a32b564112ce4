"""End-to-end tests of the ``nndl`` command line on a tiny synthetic CIFAR-10.

One small run is trained once per module (100 training images, 2 epochs, a 2-layer
ConvNet) and shared, read-only, by the tests; tests that change a run copy it first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL_Image = pytest.importorskip("PIL.Image")

from _cifar import write_synthetic_cifar10  # noqa: E402
from _cli import run_cli  # noqa: E402

from nndl import __version__  # noqa: E402
from nndl.cli.entry import build_parser  # noqa: E402
from nndl.cli.flags import DEFAULTS, settings_from_args  # noqa: E402
from nndl.cli.model_plan import build_kwargs  # noqa: E402
from nndl.cli.presets import MAIN_JOB  # noqa: E402
from nndl.data import get_CIFAR10_data  # noqa: E402
from nndl.models import load_model  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZES = ["--num-training", "100", "--num-validation", "20", "--num-test", "20"]
SMALL = [*SIZES, "--num-filters", "4", "8", "--batch-size", "20", "--quiet"]
RUN_FILES = {
    "config.json",
    "metrics.jsonl",
    "best_model.npz",
    "last_model.npz",
    "preprocess.npz",
    "checkpoint.npz",
    "loss.png",
    "accuracy.png",
    "val_acc_vs_time.png",
    "filters.png",
    ".lock",
}
METRIC_KEYS = {"epoch", "iteration", "loss", "train_acc", "val_acc", "lr", "elapsed"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=40, n_test=40)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("runs") / "run"
    code, out, err = run_cli("train", "--data-dir", cifar, "--out", run, "--epochs", "2", *SMALL)
    assert code == 0, err
    return run, out


def test_train_writes_every_file_of_the_run_folder(trained):
    run, _ = trained
    assert {p.name for p in run.iterdir()} == RUN_FILES  # no temp files left behind
    # files written by mkstemp get the usual permissions, not 0600
    mode = 0o666 & ~_umask()
    for name in ("config.json", "metrics.jsonl", "loss.png", "filters.png"):
        assert (run / name).stat().st_mode & 0o777 == mode, name
    for name in ("loss.png", "accuracy.png", "val_acc_vs_time.png", "filters.png"):
        data = (run / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 3000, name
        with PIL_Image.open(run / name) as im:
            im.verify()
            assert min(im.size) >= 200


def test_metrics_have_one_line_per_epoch(trained):
    run, _ = trained
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert [m["iteration"] for m in metrics] == [5, 10]  # 100 images / batch 20
    for m in metrics:
        assert set(m) == METRIC_KEYS
        assert 0 <= m["train_acc"] <= 1 and 0 <= m["val_acc"] <= 1 and np.isfinite(m["loss"])
    assert metrics[0]["lr"] == pytest.approx(DEFAULTS["lr"])
    assert metrics[1]["lr"] == pytest.approx(DEFAULTS["lr"] * DEFAULTS["lr_decay"])
    assert 0 < metrics[0]["elapsed"] < metrics[1]["elapsed"]


def test_config_records_flags_defaults_data_and_version(trained, cifar):
    run, _ = trained
    config = json.loads((run / "config.json").read_text())
    s = config["settings"]
    assert s["num_filters"] == [4, 8] and s["batch_size"] == 20 and s["epochs"] == 2
    assert s["update_rule"] == DEFAULTS["update_rule"] and s["lr"] == DEFAULTS["lr"]
    assert config["model"]["name"] == "convnet"
    assert config["model"]["config"]["num_filters"] == [4, 8]
    assert config["nndl_version"] == __version__
    assert config["data"]["num_training"] == 100 and config["data"]["input_dim"] == [3, 32, 32]
    assert Path(config["data"]["data_dir"]) == cifar.resolve()
    assert len(config["data"]["class_names"]) == 10


def test_train_prints_epoch_lines_and_a_summary(trained):
    run, out = trained
    metrics = read_metrics(run)
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    pattern = (
        r"epoch (\d+)/2  loss (\d+\.\d{3})  train (\d\.\d{3})  val (\d\.\d{3})  "
        r"best (\d\.\d{3})  lr (\S+)  (\d+\.\d)s"
    )
    assert len(lines) == 2
    for line, m in zip(lines, metrics, strict=True):
        got = re.fullmatch(pattern, line)
        assert got, line
        assert int(got[1]) == m["epoch"] and float(got[4]) == pytest.approx(m["val_acc"], abs=5e-4)
    best = max(m["val_acc"] for m in metrics)
    assert f"best val acc: {best:.4f}" in out
    assert re.search(r"wall time: \d+\.\ds", out)
    assert f"run folder: {run}" in out


def test_best_and_last_models_are_loadable(trained):
    run, _ = trained
    metrics = read_metrics(run)
    best = max(metrics, key=lambda m: m["val_acc"])
    model, extra = load_model(run / "best_model.npz")
    assert extra["epoch"] == best["epoch"] and extra["val_acc"] == pytest.approx(best["val_acc"])
    W = model.params["block1.conv.W"]
    assert W.shape == (4, 3, 3, 3) and W.dtype == np.float32
    _, last_extra = load_model(run / "last_model.npz")
    assert last_extra["epoch"] == 2
    with np.load(run / "preprocess.npz", allow_pickle=False) as pre:
        assert pre["mean_image"].shape == (3, 32, 32)
        assert len(pre["class_names"]) == 10


def test_defaults_without_model_flags_are_the_default_cnn():
    args = build_parser().parse_args(["train"])
    settings = settings_from_args(args)
    assert settings == {**DEFAULTS, **MAIN_JOB}  # the 65 preset: the defaults and an average
    kwargs = build_kwargs(settings, (3, 32, 32), 10)
    assert kwargs["num_filters"] == tuple(DEFAULTS["num_filters"])
    assert kwargs["use_batchnorm"] is DEFAULTS["batchnorm"]
    assert kwargs["seed"] == DEFAULTS["seed"]


def test_other_models_take_their_flags():
    parse = build_parser().parse_args
    s = settings_from_args(parse(["train", "--model", "three_layer_convnet", "--num-filters", "8"]))
    kwargs = build_kwargs(s, (3, 32, 32), 10, explicit=["model", "num_filters"])
    assert kwargs["num_filters"] == 8 and "hidden_dims" not in kwargs
    s = settings_from_args(parse(["train", "--model", "fc_net", "--hidden-dims", "20", "10"]))
    kwargs = build_kwargs(s, (3, 32, 32), 10)
    assert kwargs["hidden_dims"] == (20, 10) and kwargs["input_dim"] == 3072


def _recompute_accuracy(run: Path, cifar: Path):
    model, _ = load_model(run / "best_model.npz")
    data = get_CIFAR10_data(100, 20, 20, data_dir=cifar)
    pred = np.argmax(model.loss(data["X_test"]), axis=1)
    return model, data, pred


def test_evaluate_matches_the_saved_model(trained, cifar, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    code, out, err = run_cli("evaluate", run, "--plot")
    assert code == 0, err
    _, data, pred = _recompute_accuracy(run, cifar)
    acc = float(np.mean(pred == data["y_test"]))
    assert f"test accuracy: {acc:.4f}" in out
    result = json.loads((run / "evaluation.json").read_text())
    assert result["accuracy"] == pytest.approx(acc)
    cm = np.array(result["confusion_matrix"])
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(data["y_test"], minlength=10))
    assert np.trace(cm) == np.sum(pred == data["y_test"])
    for i, name in enumerate(result["class_names"]):
        assert name in out
        if cm[i].sum():
            assert result["per_class_accuracy"][name] == pytest.approx(cm[i, i] / cm[i].sum())
    png = (run / "confusion_matrix.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 5000


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_prints_sorted_top3_consistent_with_training(trained, cifar, tmp_path):
    run, _ = trained
    model, data, _ = _recompute_accuracy(run, cifar)
    with np.load(run / "preprocess.npz") as pre:
        mean, names = pre["mean_image"], [str(n) for n in pre["class_names"]]
    raw = np.clip(np.rint(data["X_test"][:2] + mean), 0, 255).astype(np.uint8)
    paths = []
    for i, img in enumerate(raw):
        paths.append(tmp_path / f"img{i}.png")
        PIL_Image.fromarray(img.transpose(1, 2, 0)).save(paths[-1])
    # a larger RGBA JPEG-like input must be converted and resized
    big = PIL_Image.fromarray(np.repeat(np.repeat(raw[0].transpose(1, 2, 0), 3, 0), 3, 1))
    paths.append(tmp_path / "big.png")
    big.convert("RGBA").save(paths[-1])
    code, out, err = run_cli("predict", run, *paths)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3
    expected = _softmax(model.loss(raw.astype(np.float32) - mean).astype(np.float64))
    for k, line in enumerate(lines):
        path, rest = line.rsplit(": ", 1) if line.count(": ") == 1 else line.split(": ", 1)
        assert path == str(paths[k])
        pairs = [item.split(" ") for item in rest.split(", ")]
        assert len(pairs) == 3 and all(name in names for name, _ in pairs)
        probs = [float(p) for _, p in pairs]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-3
        if k < 2:  # the exact test image: same top class and probability as the model
            top = int(np.argmax(expected[k]))
            assert pairs[0][0] == names[top]
            assert probs[0] == pytest.approx(expected[k, top], abs=1e-4)


def test_predict_reads_16_bit_and_float_images_by_their_range(trained, tmp_path):
    run, _ = trained
    gray = (np.arange(32 * 32).reshape(32, 32) * 5 % 256).astype(np.uint8)
    PIL_Image.fromarray(gray).save(tmp_path / "a.png")
    PIL_Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "a16.png")
    PIL_Image.fromarray(gray.astype(np.float32) / 255, mode="F").save(tmp_path / "a.tif")
    code, out, err = run_cli("predict", run, *(tmp_path / n for n in ("a.png", "a16.png", "a.tif")))
    assert code == 0, err
    lines = [line.split(": ", 1)[1] for line in out.strip().splitlines()]
    assert lines[1] == lines[0]  # the 16-bit copy is the same image
    assert [p.split()[0] for p in lines[2].split(", ")] == [
        p.split()[0] for p in lines[0].split(", ")
    ]


def test_resume_continues_the_run(trained, cifar, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    before = read_metrics(run)
    code, out, err = run_cli("train", "--out", run, "--resume", "--epochs", "3", "--quiet")
    assert code == 0, err
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[:2] == before and metrics[2]["iteration"] == 15
    assert metrics[2]["elapsed"] > metrics[1]["elapsed"]
    assert "epoch 3/3" in out
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["epochs"] == 3 and len(config["resumed"]) == 1
    # The resumed run ends exactly where an uninterrupted 3-epoch run ends.
    straight = tmp_path / "straight"
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", straight, "--epochs", "3", *SMALL)
    assert code == 0, err
    resumed_model, _ = load_model(run / "last_model.npz")
    straight_model, _ = load_model(straight / "last_model.npz")
    for key, value in straight_model.params.items():
        np.testing.assert_allclose(resumed_model.params[key], value, rtol=1e-6, err_msg=key)


def test_target_accuracy_stops_after_the_first_epoch(cifar, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data-dir", cifar, "--out", run, "--epochs", "3", "--no-plots"]
    code, out, err = run_cli(*args, "--target-acc", "0", *SMALL)
    assert code == 0, err
    assert [m["epoch"] for m in read_metrics(run)] == [1]
    assert "stopped early: target accuracy" in out


def test_time_limit_stops_training(cifar, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data-dir", cifar, "--out", run, "--epochs", "50", "--no-plots"]
    code, out, err = run_cli(*args, "--time-limit", "0", *SMALL)
    assert code == 0, err
    assert "stopped early: time limit" in out
    # stopped after the first iteration: no finished epoch, but the update is kept
    assert read_metrics(run) == []
    assert (run / "checkpoint.npz").exists() and (run / "last_model.npz").exists()
    # and the run continues from the middle of its first epoch
    code, out, err = run_cli("train", "--out", run, "--resume", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert [(m["epoch"], m["iteration"]) for m in read_metrics(run)] == [(1, 5)]
    assert (run / "best_model.npz").exists() and (run / "filters.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "resnet"], "invalid choice: 'resnet'"),
        (["train", "--lr", "fast"], "invalid float value"),
        (["train", "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        (["train", "--model", "three_layer_convnet", "--dropout", "0.5"], "does not apply"),
        (["train", "--model", "three_layer_convnet", "--num-filters", "4", "8"], "one value"),
        (["train", "--resume"], "--resume needs --out"),
        (["evaluate", "no/such/run"], "run folder not found: no/such/run"),
        (["predict", "no/such/run", "x.png"], "run folder not found: no/such/run"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message):
    code, out, err = run_cli(*argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert err.startswith("usage:") or err.startswith("nndl ")


def test_bad_run_folders_and_images(trained, cifar, tmp_path):
    run, _ = trained
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, err = run_cli("predict", run, bad)
    assert code == 2 and f"cannot read image {bad}" in err
    code, _, err = run_cli("predict", run, tmp_path / "missing.jpg")
    assert code == 2 and f"image not found: {tmp_path / 'missing.jpg'}" in err
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, *SMALL)
    assert code == 2 and "already holds a run" in err  # never overwrites a run
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "2")
    assert code == 2 and "already trained 2 epochs" in err
    code, _, err = run_cli("train", "--out", run, "--resume", "--lr", "0.5")
    assert code == 2 and "cannot change --lr" in err
    code, _, err = run_cli("evaluate", tmp_path)
    assert code == 2 and "config.json" in err
    assert {p.name for p in run.iterdir()} == RUN_FILES


def test_help_lists_every_flag():
    code, out, _ = run_cli("--help")
    assert code == 0 and all(c in out for c in ("train", "evaluate", "predict"))
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    flags = [
        "--model", "--num-filters", "--filter-size", "--hidden-dims", "--batchnorm",
        "--no-batchnorm", "--dropout", "--weight-scale", "--reg", "--update-rule", "--lr",
        "--lr-decay", "--batch-size", "--epochs", "--num-training", "--num-validation",
        "--num-test", "--dtype", "--data-dir", "--out", "--seed", "--resume", "--time-limit",
        "--target-acc", "--quiet",
    ]  # fmt: skip
    missing = [f for f in flags if not re.search(rf"{f}\b", out)]
    assert not missing
    assert "convnet" in out and "adam" in out
    code, out, _ = run_cli("evaluate", "--help")
    assert code == 0 and all(f in out for f in ("RUN_DIR", "--data-dir", "--split", "--plot"))
    code, out, _ = run_cli("predict", "--help")
    assert code == 0 and "IMAGE" in out and "--top-k" in out


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "nndl", "predict", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "IMAGE" in proc.stdout
