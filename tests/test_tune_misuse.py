"""``nndl tune`` under misuse: every expected failure is one ``nndl tune: error:`` line
and exit 2; a seeded worker run again continues its sampler instead of repeating trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _cifar import write_synthetic_cifar10
from _cli import run_cli

sys.path.insert(0, str(Path(__file__).parent))
optuna = pytest.importorskip("optuna")

from test_tune import TINY, environment, load  # noqa: E402

LR_SPACE = {"--lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}


def _space(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(spec))
    return path


def _refused(*argv) -> str:
    code, out, err = run_cli("tune", *argv)
    assert code == 2, (code, out, err)
    # argparse's own usage errors print the usage line first, as every argparse tool does
    assert err.splitlines()[-1].startswith("nndl tune: error:"), err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.mark.parametrize(
    ("storage", "needle"),
    [
        ("postgresql://u:secret@127.0.0.1:99999/db", "99999"),
        ("postgresql://u:secret@127.0.0.1:abc/db", "port"),
    ],
)
def test_a_bad_storage_port_is_one_error_line(tmp_path, storage, needle):
    err = _refused("--out", tmp_path / "t", "--storage", storage, "--n-trials", 0)
    assert needle in err and "secret" not in err


def test_out_naming_a_file_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = _refused("--out", afile, "--n-trials", 0)
    assert str(afile) in err and "folder" in err
    assert afile.read_text() == "x"


def test_train_flags_without_the_separator_get_a_hint(tmp_path):
    err = _refused("--out", tmp_path / "t", "--num-training", 10)
    assert "after '--'" in err


def test_a_categorical_null_choice_leaves_the_flag_out(tmp_path):
    space = _space(tmp_path, {"--weight-scale": {"type": "categorical",
                                                 "choices": [None, 0.001]}})  # fmt: skip
    code, _, err = run_cli("tune", "--out", tmp_path / "t", "--space", space, "--n-trials", 0)
    assert code == 0, err


def test_a_seeded_worker_run_again_continues_its_sampler(tmp_path, monkeypatch):
    for key, value in environment().items():
        monkeypatch.setenv(key, value)
    data = write_synthetic_cifar10(tmp_path / "cifar", n_per_batch=40, n_test=10)
    space = _space(tmp_path, LR_SPACE)

    def one_trial(out: Path) -> None:
        code, _, err = run_cli("tune", "--out", out, "--space", space, "--seed", 0,
                               "--n-trials", 1, "--no-plots", "--", "--data-dir", data,
                               *TINY, "--epochs", 1)  # fmt: skip
        assert code == 0, err

    a, b = tmp_path / "a", tmp_path / "b"
    one_trial(a)
    one_trial(a)
    one_trial(b)
    first, second = (t.params["lr"] for t in load(a).trials)
    assert first != second, "the rerun repeated trial 0's flags"
    assert load(b).trials[0].params["lr"] == first, "the same seed gave another first trial"
