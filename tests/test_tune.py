"""``nndl tune``: trials are real ``nndl train`` runs in subprocesses, studies live in
SQLite (one machine) or PostgreSQL (many), killed workers' trials are retried.

The end-to-end tests drive the real command in subprocesses on a tiny synthetic CIFAR-10
(160 training images, 8 steps of 20 per epoch, a 4-8 filter ConvNet: about 0.1 s an
epoch) and read the study back with Optuna itself. A study's outcome is deterministic
where the test needs it to be: fixed seeds, one BLAS thread, trials enqueued with chosen
parameters.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _cifar import write_synthetic_cifar10
from _postgres import postgres_server

optuna = pytest.importorskip("optuna")

from nndl.cli import main as nndl_main  # noqa: E402
from nndl.tune import DEFAULT_SPACE, SearchSpace, TuneError, load_space  # noqa: E402
from nndl.tune.command import _check_train_part  # noqa: E402

TrialState = optuna.trial.TrialState
TINY = (
    "--num-training 160 --num-validation 40 --num-test 10 --num-filters 4 8 --batch-size 20 "
    "--quiet --no-plots"
).split()
LR_SPACE = {"--lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}


def environment() -> dict[str, str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.update(NNDL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop("NNDL_DEBUG", None)
    return env


def tune_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "nndl", "tune", *map(str, args)]


def tune(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        tune_cmd(*args), env=environment(), capture_output=True, text=True, timeout=timeout
    )


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        tune_cmd(*args),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The worker must raise KeyboardInterrupt on SIGINT even when the suite was
        # started with SIGINT ignored (a background job): Python then leaves it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(proc: subprocess.Popen, timeout=120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def ok(proc: subprocess.CompletedProcess | tuple[int, str, str]) -> None:
    """The command succeeded and printed no traceback."""
    if isinstance(proc, subprocess.CompletedProcess):
        proc = (proc.returncode, proc.stdout, proc.stderr)
    code, out, err = proc
    assert code == 0, (code, out, err)
    assert "Traceback" not in out + err, err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_synthetic_cifar10(tmp_path / "cifar", n_per_batch=40, n_test=10)


def space_file(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"space-{len(list(tmp_path.glob('space-*')))}.json"
    path.write_text(json.dumps(spec))
    return path


def load(out: Path, study: str = "nndl"):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'study.db'}")


def metrics(run_dir: str | Path) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def wait_for(predicate, timeout=60.0, what="condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def check_trial_folder(trial) -> None:
    """A complete trial's value, flags and run folder agree with each other."""
    run = Path(trial.user_attrs["run_dir"])
    records = metrics(run)
    assert trial.value == max(r["val_acc"] for r in records)
    assert trial.intermediate_values == {r["epoch"]: r["val_acc"] for r in records}
    assert trial.user_attrs["flags"] == ["--lr", repr(trial.params["lr"])]
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["lr"] == trial.params["lr"]
    assert (run / "best_model.npz").is_file() and (run / "train.log").is_file()


# --- one machine: SQLite -----------------------------------------------------------------


def test_two_workers_share_one_sqlite_study_and_report_it(tmp_path, data, capsys):
    out, space = tmp_path / "tune", space_file(tmp_path, LR_SPACE)
    args = [
        "--out",
        out,
        "--space",
        space,
        "--n-trials",
        2,
        "--no-plots",
        "--",
        "--data-dir",
        data,
        *TINY,
        "--epochs",
        1,
    ]
    workers = [start(*args), start(*args)]
    for w in workers:
        ok(finish(w))
    study = load(out)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-000{i}" for i in range(4)]
    for t in trials:
        check_trial_folder(t)
        assert Path(t.user_attrs["run_dir"]) == out / f"trial-{t.number:04d}"
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    assert nndl_main(["tune", "--out", str(out), "--report"]) == 0
    report = capsys.readouterr().out
    best = study.best_trial
    assert f"best: trial {best.number}, val_acc {best.value:.4f}" in report
    assert f"command: {best.user_attrs['command']}" in report
    assert best.user_attrs["command"].startswith(f"nndl train --out {out}/trial-")
    rows = [line.split() for line in report.splitlines()[2:6]]
    assert [r[:3] for r in rows] == [[str(t.number), "COMPLETE", f"{t.value:.4f}"] for t in trials]
    for name in ("history.png", "importance.png", "intermediate.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_pruning_stops_a_bad_trial_cleanly(tmp_path, data):
    """Trial 0 learns (lr 1e-2), trial 1 cannot (lr 1e-9): the median pruner, allowed to
    act after epoch 1 once one trial has finished, stops trial 1 with SIGINT at a step
    boundary, long before its 12 epochs, leaving a resumable run folder."""
    out = tmp_path / "tune"
    spec = {"--lr": {"type": "categorical", "choices": [1e-2, 1e-9]}}
    study = optuna.create_study(
        study_name="nndl", storage=f"sqlite:///{tmp_path / 'tune.db'}", direction="maximize"
    )
    out.mkdir()
    (tmp_path / "tune.db").rename(out / "study.db")
    study = load(out)
    study.enqueue_trial({"lr": 1e-2})
    study.enqueue_trial({"lr": 1e-9})
    proc = tune(
        "--out",
        out,
        "--space",
        space_file(tmp_path, spec),
        "--n-trials",
        2,
        "--startup-trials",
        1,
        "--prune-after",
        1,
        "--no-plots",
        "--",
        "--data-dir",
        data,
        *TINY,
        "--epochs",
        12,
    )
    ok(proc)
    good, bad = load(out).get_trials()
    assert good.state == TrialState.COMPLETE and len(good.intermediate_values) == 12
    assert bad.state == TrialState.PRUNED
    assert list(bad.intermediate_values) == [1]
    assert bad.intermediate_values[1] < good.intermediate_values[1]
    run = Path(bad.user_attrs["run_dir"])
    assert 1 <= len(metrics(run)) < 12  # stopped early
    assert (run / "checkpoint.npz").is_file()  # ... cleanly: resumable
    assert "interrupted; continue with" in (run / "train.log").read_text()
    assert "trial 1 pruned after epoch 1" in proc.stdout


def lock_is_free(run: Path) -> bool:
    with open(run / ".lock", "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_a_killed_workers_trial_is_retried_and_the_rerun_completes_the_study(tmp_path, data):
    out, space = tmp_path / "tune", space_file(tmp_path, LR_SPACE)
    args = [
        "--out",
        out,
        "--space",
        space,
        "--max-trials",
        3,
        "--heartbeat",
        1,
        "--pruner",
        "none",
        "--no-plots",
        "--",
        "--data-dir",
        data,
        *TINY,
        "--epochs",
        6,
    ]
    worker = start(*args)
    run1 = out / "trial-0001"
    wait_for(lambda: (run1 / "checkpoint.npz").is_file(), what="an epoch's checkpoint")
    worker.kill()  # kill -9: no chance to clean up
    killed_at = time.monotonic()
    worker.communicate()
    # Its nndl train dies with it (PR_SET_PDEATHSIG), releasing the run folder.
    wait_for(lambda: lock_is_free(run1), timeout=10, what="the trial's run to die")
    killed = load(out).get_trials()[1]
    assert killed.state == TrialState.RUNNING
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))  # three heartbeats missed

    rerun = tune(*args)
    ok(rerun)
    trials = load(out).get_trials()
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    retry = trials[2]
    assert retry.params == killed.params
    assert retry.system_attrs["failed_trial"] == 1
    assert retry.user_attrs["run_dir"] == str(run1)  # it continued the killed run's folder
    assert "trial 2 (trial 1 again, resuming)" in rerun.stdout
    config = json.loads((run1 / "config.json").read_text())
    assert len(config.get("resumed", [])) == 1
    assert [r["epoch"] for r in metrics(run1)] == list(range(1, 7))
    check_trial_folder(retry)
    assert sorted(retry.intermediate_values) == list(range(1, 7))


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"),
     (signal.SIGTERM, 143, "terminated (SIGTERM)")],  # a scheduler's stop
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_worker_stops_its_trial_cleanly_and_queues_it_again(
    tmp_path, data, signum, code, said
):
    out, space = tmp_path / "tune", space_file(tmp_path, LR_SPACE)
    args = [
        "--out",
        out,
        "--space",
        space,
        "--n-trials",
        1,
        "--pruner",
        "none",
        "--no-plots",
        "--",
        "--data-dir",
        data,
        *TINY,
        "--epochs",
        6,
    ]
    worker = start(*args)
    run0 = out / "trial-0000"
    wait_for(lambda: (run0 / "checkpoint.npz").is_file(), what="an epoch's checkpoint")
    worker.send_signal(signum)
    status, _, err = finish(worker)
    assert status == code, err
    assert "Traceback" not in err
    assert "trial 0 is queued again" in err and f"nndl tune: {said}" in err
    assert (run0 / "checkpoint.npz").is_file()
    interrupted, queued = load(out).get_trials()
    assert interrupted.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == interrupted.params
    assert said in interrupted.user_attrs["error"]

    ok(tune("--out", out, "--n-trials", 1, "--no-plots"))  # flags and space: the study's
    _, retry = load(out).get_trials()
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"] == str(run0)
    assert [r["epoch"] for r in metrics(run0)] == list(range(1, 7))


# --- many machines: PostgreSQL -------------------------------------------------------------


def test_workers_on_a_real_postgresql_server(tmp_path, data, capsys):
    """Create the study once, then two workers (each with its own --out, as on two
    machines; the second takes the study's flags and space) share it."""
    with postgres_server() as url:
        common = ["--storage", url, "--study", "pg", "--no-plots"]
        created = nndl_main(
            [
                "tune",
                *common,
                "--out",
                str(tmp_path / "a"),
                "--n-trials",
                "0",
                "--space",
                str(space_file(tmp_path, LR_SPACE)),
                "--",
                "--data-dir",
                str(data),
                *TINY,
                "--epochs",
                "1",
            ]
        )
        assert created == 0, capsys.readouterr().err
        workers = [
            start(
                *common,
                "--out",
                tmp_path / "a",
                "--n-trials",
                1,
                "--",
                "--data-dir",
                data,
                *TINY,
                "--epochs",
                1,
            ),
            start(*common, "--out", tmp_path / "b", "--n-trials", 1),
        ]
        for w in workers:
            ok(finish(w))
        study = optuna.load_study(study_name="pg", storage=url)
        trials = study.get_trials()
        assert [t.number for t in trials] == [0, 1]
        assert all(t.state == TrialState.COMPLETE for t in trials)
        a = [p.name for p in (tmp_path / "a").glob("trial-*")]
        b = [p.name for p in (tmp_path / "b").glob("trial-*")]
        assert len(a) == len(b) == 1 and sorted(a + b) == ["trial-0000", "trial-0001"]
        for t in trials:
            check_trial_folder(t)
        capsys.readouterr()
        assert nndl_main(["tune", *common, "--out", str(tmp_path / "a"), "--report"]) == 0
        assert f"command: {study.best_trial.user_attrs['command']}" in capsys.readouterr().out


# --- misuse: one error line, exit 2, nothing written -------------------------------------


def _misuse_cases(tmp_path: Path, data: Path) -> dict[str, tuple[list, str]]:
    lr = ["--space", str(space_file(tmp_path, LR_SPACE))]
    train = ["--", "--data-dir", str(data), *TINY, "--epochs", "1"]
    bad = {
        "json": '{"--lr": ',
        "type": {"--lr": {"type": "uniform", "low": 1e-3, "high": 1e-2}},
        "key": {"--lr": {"type": "float", "low": 1e-3, "high": 1e-2, "lgo": True}},
        "range": {"--lr": {"type": "float", "low": 1e-2, "high": 1e-3}},
        "flag": {"--lrr": {"type": "float", "low": 1e-3, "high": 1e-2}},
        "value": {"--batch-size": {"type": "categorical", "choices": [20, 500]}},
        "own": {"--out": {"type": "categorical", "choices": ["x"]}},
    }
    files = {}
    for name, spec in bad.items():
        files[name] = tmp_path / f"bad-{name}.json"
        files[name].write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return {
        "storage-not-a-url": ([*lr, "--storage", "not a url", *train], "--storage"),
        "storage-unknown-dialect": ([*lr, "--storage", "nosuchdb://x/y", *train], "nosuchdb"),
        "storage-refused": (
            [*lr, "--storage", "postgresql://u:secret@127.0.0.1:9/db", *train],
            "u:***@127.0.0.1:9",
        ),
        "storage-missing-folder": (
            [*lr, "--storage", "sqlite:////nonexistent/x.db", *train],
            "/nonexistent",
        ),
        "train-unknown-flag": ([*lr, *train, "--lrr", "3"], "--lrr"),
        "train-bad-value": ([*lr, *train, "--lr", "-1"], "--lr"),
        "train-out": ([*lr, *train, "--out", "x"], "--out"),
        "train-searched-too": ([*lr, *train, "--lr", "1e-3"], "--lr is both fixed"),
        "n-trials": ([*lr, "--n-trials", "-1", *train], "--n-trials"),
        "timeout": ([*lr, "--timeout", "nan", *train], "--timeout"),
        "report-without-study": (["--report"], "no study"),
        **{
            f"space-{name}": (["--space", str(path), *train], str(path))
            for name, path in files.items()
        },
        "space-missing": (["--space", str(tmp_path / "none.json"), *train], "none.json"),
    }


def test_misuse_is_one_error_line_and_exit_2(tmp_path, data, capsys):
    for name, (args, needle) in _misuse_cases(tmp_path, data).items():
        out = tmp_path / f"out-{name}"
        code = nndl_main(["tune", "--out", str(out), *args])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert err.startswith("nndl tune: error: ") and err.count("\n") == 1, (name, err)
        assert needle in err, (name, err)
        assert "secret" not in err
        assert not out.exists() or not any(out.iterdir()), (name, list(out.iterdir()))


def test_misuse_through_the_real_command(tmp_path, data):
    """The installed entry point: exit 2, one line, no traceback, before any trial."""
    lr = ["--space", space_file(tmp_path, LR_SPACE)]
    cases = [
        [*lr, "--storage", "nosuchdb://x", "--", "--data-dir", data, *TINY],
        [*lr, "--", "--data-dir", data, *TINY, "--no-such-flag"],
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        procs = list(pool.map(lambda a: tune("--out", tmp_path / "o", *a), cases))
    for proc in procs:
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("nndl tune: error: "), proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists()


def test_a_study_keeps_its_flags_space_and_folder(tmp_path, data, capsys):
    out = tmp_path / "tune"

    def tune_here(*args) -> tuple[int, str]:
        code = nndl_main(["tune", "--out", str(out), "--n-trials", "0", *map(str, args)])
        return code, capsys.readouterr().err

    lr = space_file(tmp_path, LR_SPACE)
    assert tune_here("--space", lr, "--", "--data-dir", data, *TINY) == (0, "")
    assert load(out).user_attrs["space"] == LR_SPACE
    assert load(out).user_attrs["train_flags"] == ["--data-dir", str(data), *TINY]
    assert tune_here() == (0, "")  # no flags, no space: the study's
    assert tune_here("--space", lr) == (0, "")  # the same space
    code, err = tune_here("--", "--data-dir", data, *TINY, "--seed", 3)
    assert code == 2 and "give the same flags" in err
    code, err = tune_here("--space", space_file(tmp_path, DEFAULT_SPACE))
    assert code == 2 and "another space" in err
    code, err = tune_here("--study", "other")
    assert code == 2 and "holds the trials of study 'nndl'" in err


# --- the search space ----------------------------------------------------------------------


def test_space_words_for_every_kind_of_choice():
    space = SearchSpace(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "--epochs": {"type": "int", "low": 2, "high": 8, "step": 2},
            "--num-filters": {"type": "categorical", "choices": [[8, 16], [16, 32]]},
            "--batchnorm": {"type": "categorical", "choices": [True, False]},
            "--weight-scale": {"type": "categorical", "choices": [None, 0.001]},
            "--update-rule": {"type": "categorical", "choices": ["adam", "sgd_momentum"]},
        }
    )
    trial = optuna.trial.FixedTrial(
        {
            "lr": 0.00123,
            "epochs": 4,
            "num-filters": "16 32",
            "batchnorm": False,
            "weight-scale": None,
            "update-rule": "sgd_momentum",
        }
    )
    assert space.sample(trial) == [
        "--lr",
        "0.00123",
        "--epochs",
        "4",
        "--num-filters",
        "16",
        "32",
        "--no-batchnorm",
        "--update-rule",
        "sgd_momentum",
    ]
    assert space.candidates()["--epochs"] == [["--epochs", "2"], ["--epochs", "8"]]
    assert space.candidates()["--weight-scale"] == [[], ["--weight-scale", "0.001"]]


def test_the_default_space_fits_nndl_train():
    assert load_space(None).spec == DEFAULT_SPACE
    _check_train_part([], load_space(None))  # every range end and choice is a valid run


@pytest.mark.parametrize(
    "spec, needle",
    [
        ([], "expected a JSON object"),
        ({"--lr": 3}, '"type" float, int or categorical'),
        ({"--lr": {"type": "float", "low": "a", "high": 1}}, "'low' must be a finite float"),
        ({"--lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"--epochs": {"type": "int", "low": 1.5, "high": 3}}, "'low' must be a finite int"),
        ({"--x": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"--x": {"type": "categorical", "choices": [1, 1]}}, "given twice"),
        ({"--x": {"type": "categorical", "choices": [{"a": 1}]}}, "is not a number"),
        (
            {
                "--lr": {"type": "float", "low": 0.1, "high": 1},
                "lr": {"type": "int", "low": 1, "high": 2},
            },
            "given twice",
        ),
        ({"--lr x": {"type": "float", "low": 0.1, "high": 1}}, "not an nndl train flag"),
    ],
)
def test_bad_spaces_are_refused_naming_the_problem(spec, needle):
    with pytest.raises(TuneError, match="the search space") as info:
        SearchSpace(spec)
    assert needle in str(info.value)


def test_help_lists_tune(capsys):
    assert nndl_main(["--help"]) == 0
    assert "tune" in capsys.readouterr().out
    assert nndl_main(["tune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--storage URL" in text and "--lr" in text
    assert nndl_main(["tune", "--show-space"]) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_SPACE
