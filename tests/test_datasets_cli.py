"""The command line on other data sets: nndl train --dataset NAME|PATH (--image-size,
--channels), and evaluate / predict / summary / export / tune following the run; bad data
as one ``nndl train: error:`` line naming the file, exit 2, nothing cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli
from _datasets import IDX_NAMES, save_image, write_folder, write_idx, write_mnist

from nndl.cli.inputs import to_gray
from nndl.cli.run_folder import RunFolder
from nndl.data import apply_preprocess
from nndl.datasets import load_dataset

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

TINY = ["--num-filters", "4", "4", "4", "--batch-size", "10", "--epochs", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("NNDL_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("d") / "shapes", per_class=25, gray=True)


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory, gray_folder) -> Path:
    base = tmp_path_factory.getbasetemp()
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    try:
        run = tmp_path_factory.mktemp("runs") / "gray"
        code, _, err = run_cli("train", "--dataset", gray_folder, "--out", run, *TINY)
    finally:
        os.environ.pop("XDG_CACHE_HOME")
    assert code == 0, err
    return run


def test_train_on_a_folder_records_dataset_shape_channels_and_classes(gray_run, gray_folder):
    config = json.loads((gray_run / "config.json").read_text())
    assert config["settings"]["dataset"] == str(gray_folder.resolve())
    data = config["data"]
    assert data["input_dim"] == [1, 8, 8] and data["channels"] == 1
    assert data["image_size"] == [8, 8] and data["class_names"] == ["cat", "dog"]
    # sizes not given are fitted to the 50 images: 5 held out for test, 4 validation
    assert (data["num_training"], data["num_validation"], data["num_test"]) == (41, 4, 5)
    assert config["settings"]["num_training"] == 41
    model, _, pre = RunFolder(gray_run).load_model()
    assert model.config["input_dim"] == [1, 8, 8] and model.config["num_classes"] == 2
    assert pre["dataset"] == str(gray_folder.resolve()) and pre["mean_image"].shape == (1, 8, 8)
    assert (gray_run / "filters.png").is_file()


def test_evaluate_follows_the_run(gray_run, gray_folder, monkeypatch, tmp_path):
    code, out, err = run_cli("evaluate", gray_run)
    assert code == 0, err
    result = json.loads((gray_run / "evaluation.json").read_text())
    model, _, pre = RunFolder(gray_run).load_model()
    data = load_dataset(gray_folder, num_validation=4, subtract_mean=False)
    pred = model.loss(apply_preprocess(data["X_test"], pre)).argmax(axis=1)
    assert result["num_images"] == 5
    assert result["accuracy"] == pytest.approx(float(np.mean(pred == data["y_test"])))


def test_predict_converts_and_resizes_saying_so(gray_run, gray_folder, tmp_path):
    model, _, pre = RunFolder(gray_run).load_model()
    one = sorted((gray_folder / "dog").iterdir())[0]
    code, out, err = run_cli("predict", gray_run, one)
    assert code == 0 and "note" not in err  # already 1 x 8 x 8
    x = np.asarray(Image.open(one), np.float32)[None, None]
    p = np.exp(model.loss(apply_preprocess(x, pre)))
    p /= p.sum()
    top = int(p.argmax())
    assert f"{pre['class_names'][top]} {p[0, top]:.4f}" in out
    big = save_image(tmp_path / "big.png", np.random.default_rng(0).integers(0, 256, (20, 16, 3),
                     dtype=np.uint8))  # fmt: skip
    code, out, err = run_cli("predict", gray_run, big)
    assert code == 0, err
    assert "1 converted to grayscale" in err and "1 resized to 8x8" in err


def test_to_gray_is_pillows_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    expect = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
    got = to_gray(rgb.transpose(2, 0, 1)[None].astype(np.float32))
    assert got.shape == (1, 1, 6, 7) and np.array_equal(got[0, 0], expect)


def test_summary_and_export_follow_the_run(gray_run, tmp_path):
    code, out, err = run_cli("summary", gray_run)
    assert code == 0 and "input (1, 8, 8) -> output (2,)" in out
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    code, out, err = run_cli("export", gray_run, "--output", tmp_path / "m.onnx")
    assert code == 0, err
    graph = onnx.load(tmp_path / "m.onnx").graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [1, 8, 8]
    model, _, pre = RunFolder(gray_run).load_model()
    x = np.random.default_rng(1).integers(0, 256, (3, 1, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": x})[0]
    s = model.loss(apply_preprocess(x, pre))
    expect = np.exp(s - s.max(axis=1, keepdims=True))
    assert np.allclose(got, expect / expect.sum(axis=1, keepdims=True), atol=1e-5)


def test_resume_refuses_another_dataset_naming_both(gray_run, gray_folder, tmp_path):
    other = write_folder(tmp_path / "other", per_class=5)
    code, _, err = run_cli("train", "--out", gray_run, "--resume", "--epochs", "2",
                           "--dataset", other)  # fmt: skip
    assert code == 2
    assert str(gray_folder.resolve()) in err and str(other.resolve()) in err


def test_preset_65_on_mnist_builds_the_model_for_1x28x28(tmp_path):
    write_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=10)
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--preset", "65", "--dataset", "mnist", "--data-dir",
                           tmp_path / "data", "--out", run, "--num-validation", "10",
                           "--no-plots", *TINY)  # fmt: skip
    assert code == 0, err
    model, _, pre = RunFolder(run).load_model()
    assert model.config["input_dim"] == [1, 28, 28] and model.config["num_classes"] == 10
    assert pre["dataset"] == "mnist"
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["num_training"] == 30 and config["data"]["num_test"] == 10
    # 28 -> 14 -> 7 -> 3: the odd map is pooled with floor, and exports as such
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert run_cli("export", run, "--output", tmp_path / "m.onnx")[0] == 0
    x = np.random.default_rng(1).integers(0, 256, (3, 1, 28, 28)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": x})[0]
    s = model.loss(apply_preprocess(x, pre))
    expect = np.exp(s - s.max(axis=1, keepdims=True))
    assert np.allclose(got, expect / expect.sum(axis=1, keepdims=True), atol=1e-5)


def test_arch_spec_head_gets_the_datas_class_count(tmp_path, gray_folder):
    spec = [{"type": "conv_bn_relu_pool", "filters": 4}, {"type": "flatten"},
            {"type": "linear", "units": 10}]  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(spec))
    run = tmp_path / "run"
    code, _, err = run_cli(
        "train",
        "--arch",
        tmp_path / "a.json",
        "--dataset",
        gray_folder,
        "--out",
        run,
        "--channels",
        "3",
        "--image-size",
        "6",
        "6",
        "--batch-size",
        "10",
        "--epochs",
        "1",
        "--quiet",
        "--no-plots",
    )
    assert code == 0, err
    model, _, _ = RunFolder(run).load_model()
    assert model.config["layers"][-1]["units"] == 2 and model.config["input_dim"] == [3, 6, 6]


def test_unknown_dataset_and_data_dir_with_a_folder(tmp_path, gray_folder):
    code, _, err = run_cli("train", "--dataset", "imagenet", "--out", tmp_path / "r")
    assert code == 2 and "--dataset imagenet: neither a data set (cifar10" in err
    code, _, err = run_cli("train", "--dataset", gray_folder, "--data-dir", tmp_path,
                           "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "--data-dir applies to the named data sets" in err


def _mnist_lying(root: Path) -> str:
    folder = write_mnist(root / "mnist", n_train=20, n_test=5)
    write_idx(folder / IDX_NAMES[0], np.zeros((20, 28, 28), np.uint8), dims=(2000, 28, 28))
    return str(folder / IDX_NAMES[0])


def _mnist_labels(root: Path) -> str:
    folder = write_mnist(root / "mnist", n_train=20, n_test=5)
    write_idx(folder / IDX_NAMES[3], np.full(5, 12, np.uint8))
    return str(folder / IDX_NAMES[3])


def _bad_folder(kind: str):
    def make(root: Path) -> str:
        r = root / "imgs"
        if kind == "empty":
            r.mkdir()
            return str(r)
        write_folder(r, per_class=3)
        if kind == "no-images":
            (r / "cow").mkdir()
            return str(r / "cow")
        if kind == "one-class":
            import shutil

            shutil.rmtree(r / "dog")
            return str(r)
        if kind == "not-an-image":
            (r / "dog" / "x.jpg").write_text("hello")
            return str(r / "dog" / "x.jpg")
        if kind == "truncated":
            data = (r / "dog" / "000.png").read_bytes()
            (r / "dog" / "001.png").write_bytes(data[: len(data) // 2])
            return str(r / "dog" / "001.png")
        if kind == "bomb":
            Image.new("1", (9000, 8000)).save(r / "cat" / "bomb.png")
            return str(r / "cat" / "bomb.png")
        if kind == "mixed-sizes":
            save_image(r / "cat" / "wide.png", np.zeros((8, 12, 3), np.uint8))
            return str(r / "cat" / "wide.png")
        if kind == "symlink-loop":
            os.symlink(r, r / "dog" / "again")
            return str(r / "dog" / "again")
        raise AssertionError(kind)

    return make


KINDS = ["empty", "no-images", "one-class", "not-an-image", "truncated", "bomb",
         "mixed-sizes", "symlink-loop"]  # fmt: skip


@pytest.mark.parametrize("kind", [*KINDS, "idx-lying", "labels-out-of-range"])
def test_bad_data_is_one_error_line_naming_the_file(tmp_path, kind):
    if kind == "idx-lying":
        named, args = _mnist_lying(tmp_path), ["--dataset", "mnist", "--data-dir", tmp_path]
    elif kind == "labels-out-of-range":
        named, args = _mnist_labels(tmp_path), ["--dataset", "mnist", "--data-dir", tmp_path]
    else:
        named = _bad_folder(kind)(tmp_path)
        args = ["--dataset", tmp_path / "imgs"]
    run = tmp_path / "run"
    code, out, err = run_cli("train", *args, "--out", run, "--no-plots", *TINY)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nndl train: error: "), err
    assert named in lines[0], (named, lines[0])
    assert not (run / "config.json").exists()
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "nndl" / "image-folders"
    assert not cache.exists() or not [p for p in cache.iterdir() if "imgs" in str(p)]


def test_tune_checks_and_prepares_the_dataset(tmp_path, gray_folder):
    from nndl.tune.errors import TuneError
    from nndl.tune.train_cli import locate_data, parse_train_flags

    with pytest.raises(TuneError, match="at most 28"):
        parse_train_flags(["--dataset", "mnist", "--filter-size", "29"])
    assert locate_data(None, str(gray_folder)) == gray_folder.resolve()


def test_a_folder_run_resumes_on_its_cached_data(gray_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(gray_run, run)
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "2", "--quiet",
                           "--no-plots")  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


@pytest.mark.parametrize(
    ("model", "flags"),
    [("three_layer_convnet", ["--num-filters", "4", "--filter-size", "3", "--hidden-dims", "8"]),
     ("fc_net", ["--hidden-dims", "8"]), ("two_layer_net", ["--hidden-dims", "8"])],
)  # fmt: skip
def test_every_model_kind_is_built_for_the_data(tmp_path, gray_folder, model, flags):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--model", model, *flags, "--dataset", gray_folder,
                           "--image-size", "6", "6", "--out", run, "--batch-size", "10",
                           "--epochs", "1", "--quiet", "--no-plots")  # fmt: skip
    assert code == 0, err
    loaded, _, pre = RunFolder(run).load_model()
    assert np.prod(loaded.config["input_dim"]) == 36 and loaded.config["num_classes"] == 2
    assert pre["mean_image"].shape == (1, 6, 6)
    code, out, err = run_cli("evaluate", run)
    assert code == 0 and "accuracy" in out, err


def test_a_spec_for_the_folders_own_classes_trains(tmp_path):
    root = write_folder(tmp_path / "three", classes=("a", "b", "c"), per_class=8)
    spec = [{"type": "conv_bn_relu_pool", "filters": 4}, {"type": "flatten"},
            {"type": "linear", "units": 3}]  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(spec))
    code, _, err = run_cli("train", "--arch", tmp_path / "a.json", "--dataset", root, "--out",
                           tmp_path / "run", "--batch-size", "5", "--epochs", "1", "--quiet",
                           "--no-plots")  # fmt: skip
    assert code == 0, err
    spec[-1]["units"] = 7  # neither the data's 3 nor CIFAR-10's 10: a mistake, refused
    (tmp_path / "b.json").write_text(json.dumps(spec))
    code, _, err = run_cli("train", "--arch", tmp_path / "b.json", "--dataset", root, "--out",
                           tmp_path / "run2", "--quiet", "--no-plots")  # fmt: skip
    assert code == 2 and "expected (3,) scores" in err


@pytest.mark.parametrize("method", ["saliency", "gradcam", "classvis"])
def test_explain_follows_a_grayscale_run(gray_run, tmp_path, method):
    rgb = np.random.default_rng(2).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    image = save_image(tmp_path / "colour.png", rgb)
    images = [] if method == "classvis" else [image]
    steps = ["--steps", "3"] if method == "classvis" else []
    code, out, err = run_cli("explain", gray_run, *images, "--method", method,
                             "--out", tmp_path / "x", *steps)  # fmt: skip
    assert code == 0, err
    pngs = list((tmp_path / "x").glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    if images:
        assert "converted to grayscale" in err and "resized to 8x8" in err
        assert out.startswith(f"{image}: predicted ")


def test_image_size_and_channels_of_a_named_set_are_refused_before_anything(tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--dataset", "mnist", "--channels", "3", "--out", run)
    assert code == 2 and "mnist images are 1 x 28 x 28" in err and not run.exists()
    code, _, err = run_cli("train", "--dataset", "cifar10", "--image-size", "64", "64",
                           "--out", run)  # fmt: skip
    assert code == 2 and "apply to image folders" in err and not run.exists()
