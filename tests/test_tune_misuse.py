"""``nndl tune`` under misuse: every expected failure is one ``nndl tune: error:`` line
and exit 2; a seeded worker run again continues its sampler instead of repeating trials."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _cifar import write_synthetic_cifar10
from _cli import run_cli

sys.path.insert(0, str(Path(__file__).parent))
optuna = pytest.importorskip("optuna")

from test_tune import TINY, environment, load, lock_is_free  # noqa: E402

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


# --- failures of the machine in the middle of a study ---------------------------------------

TRAIN = ("--num-training", 160, "--num-validation", 40, "--num-test", 10,
         "--num-filters", 4, 8, "--batch-size", 20, "--quiet", "--no-plots")  # fmt: skip


def _trials(storage_url: str) -> list:
    return optuna.load_study(study_name="nndl", storage=storage_url).get_trials()


def _small_filesystem(mount_point: Path, size: str) -> list[str]:
    """A command prefix that runs the rest in its own mount namespace with a ``size``
    tmpfs at ``mount_point``: a disk that really fills up, visible to that command only."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs tmpfs "$0"',
                            str(mount_point)], capture_output=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", mount, str(mount_point)]


def test_a_full_disk_during_a_trial_is_an_error_line_and_the_trial_is_marked_failed(tmp_path):
    """The trials' folders on a 64 kB file system: the trial's nndl train runs out of
    space; the worker says so in one line, exit 2, and the trial is FAIL (not RUNNING)."""
    data = write_synthetic_cifar10(tmp_path / "cifar", n_per_batch=40, n_test=10)
    disk = tmp_path / "disk"
    disk.mkdir()
    url = f"sqlite:///{tmp_path / 'study.db'}"  # the storage on a disk with room
    command = [*_small_filesystem(disk, "64k"), sys.executable, "-m", "nndl", "tune",
               "--out", str(disk / "tune"), "--storage", url,
               "--space", str(_space(tmp_path, LR_SPACE)), "--n-trials", "2", "--no-plots",
               "--", "--data-dir", str(data), *map(str, TRAIN), "--epochs", "2"]  # fmt: skip
    done = subprocess.run(command, env=environment(), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nndl tune: error: trial 0:"), done.stderr
    assert os.strerror(errno.ENOSPC) in last and "free some space" in last
    assert "trial 0 is marked failed" in last and "Traceback" not in done.stderr
    (trial,) = _trials(url)  # the worker stopped: no second trial on a full disk
    assert trial.state == optuna.trial.TrialState.FAIL
    assert os.strerror(errno.ENOSPC) in trial.user_attrs["error"]


def test_a_storage_failure_mid_trial_stops_the_run_and_marks_the_trial_failed(
    tmp_path, monkeypatch
):
    """The study's database fails while the trial reports its first epoch (SQLite's
    "database or disk is full"): one error line, exit 2, the trial's nndl train stopped
    (its run folder unlocked, its checkpoint saved) and the trial marked FAIL."""
    import sqlalchemy.exc

    for key, value in environment().items():
        monkeypatch.setenv(key, value)
    data = write_synthetic_cifar10(tmp_path / "cifar", n_per_batch=40, n_test=10)
    full = sqlalchemy.exc.OperationalError(
        "UPDATE trial_values", {}, sqlite3.OperationalError("database or disk is full")
    )

    def failing_write(self, trial_id, step, value):
        raise full

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_intermediate_value",
                        failing_write)  # fmt: skip
    out = tmp_path / "tune"
    code, _, err = run_cli("tune", "--out", out, "--space", _space(tmp_path, LR_SPACE),
                           "--n-trials", 2, "--no-plots", "--", "--data-dir", data, *TRAIN,
                           "--epochs", 3)  # fmt: skip
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nndl tune: error: the storage failed:"), err
    assert "database or disk is full" in last and "trial 0 is marked failed" in last
    (trial,) = load(out).get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "database or disk is full" in trial.user_attrs["error"]
    run = Path(trial.user_attrs["run_dir"])
    assert (run / "checkpoint.npz").is_file()  # stopped like Ctrl-C: it saved
    assert lock_is_free(run)
