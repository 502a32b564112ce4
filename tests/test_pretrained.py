"""The pretrained model shipped inside the package: ``nndl.models.pretrained()`` and
``nndl predict --pretrained``.

Its stated accuracy is recomputed on the real test set where it is available; the
README must state the same figure, and the documentation's Results page the figure and
the commands that produced the weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from _cifar import real_cifar_dir
from _cli import run_cli

from nndl.cli.report import softmax
from nndl.data import CLASS_NAMES, apply_preprocess, load_CIFAR_batch
from nndl.model_base import Model
from nndl.models import PRETRAINED, pretrained

PIL_Image = pytest.importorskip("PIL.Image")
README = Path(__file__).resolve().parent.parent / "README.md"
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results.md"


@pytest.fixture(scope="module")
def shipped():
    return pretrained()


def test_every_shipped_file_is_small_and_in_the_package():
    for name, file in PRETRAINED.items():
        ref = resources.files("nndl") / "weights" / file
        assert ref.is_file(), name
        assert len(ref.read_bytes()) < 2**20, f"{name}: the package carries it; keep it < 1 MB"


def test_pretrained_is_a_model_with_its_preprocessing_accuracy_and_command(shipped):
    model, info = shipped
    assert isinstance(model, Model)
    pre = info["preprocess"]
    assert pre["mean_image"].shape == (3, 32, 32)
    assert list(pre["class_names"]) == list(CLASS_NAMES)
    assert info["num_test"] == 10000 and 0.65 <= info["test_accuracy"] <= 1
    assert info["command"][0].startswith("nndl train --preset 65 ")
    assert all(np.isfinite(p).all() for p in model.params.values())
    X = apply_preprocess(np.full((2, 3, 32, 32), 128.0), pre)
    assert model.loss(X).shape == (2, 10)


def test_readme_and_results_state_the_accuracy_and_the_commands(shipped):
    _, info = shipped
    assert f"{100 * info['test_accuracy']:.1f}%" in README.read_text()
    text = RESULTS.read_text()
    assert f"{100 * info['test_accuracy']:.1f}%" in text and f"{info['test_accuracy']:.4f}" in text
    for command in info["command"]:
        assert command in text, command


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"pretrained: unknown model 'nope'.*default"):
        pretrained("nope")


def test_stated_accuracy_holds_on_the_real_test_set(shipped):
    X, y = load_CIFAR_batch(real_cifar_dir() / "test_batch")  # (N, 32, 32, 3) 0-255
    model, info = shipped
    Xp = apply_preprocess(X.transpose(0, 3, 1, 2), info["preprocess"])
    pred = np.concatenate([model.loss(Xp[i : i + 1000]).argmax(1) for i in range(0, len(X), 1000)])
    # The same images and weights; only float32 summation order may differ (thread count).
    assert abs(np.mean(pred == y) - info["test_accuracy"]) <= 0.001


def test_predict_pretrained_prints_the_models_top_classes(shipped, tmp_path):
    model, info = shipped
    pre = info["preprocess"]
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    paths = []
    for i, img in enumerate(raw):
        paths.append(tmp_path / f"img{i}.png")
        PIL_Image.fromarray(img).save(paths[-1])
    code, out, err = run_cli("predict", "--pretrained", "--top-k", "2", *paths)
    assert code == 0, err
    expected = softmax(model.loss(apply_preprocess(raw.transpose(0, 3, 1, 2), pre)))
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines):
        path, rest = line.split(": ", 1)
        assert path == str(paths[k])
        top = np.argsort(-expected[k], kind="stable")[:2]
        pairs = [item.split(" ") for item in rest.split(", ")]
        assert [n for n, _ in pairs] == [CLASS_NAMES[i] for i in top]
        assert float(pairs[0][1]) == pytest.approx(expected[k, top[0]], abs=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--pretrained", "--last", "x.png"], "--last takes a run folder"),
        (["predict", "some_run"], "expected RUN_DIR and at least one IMAGE"),
    ],
)
def test_predict_misuse_is_a_clear_error(argv, message):
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert err.startswith("nndl predict: error:") and message in err
    assert "Traceback" not in err
