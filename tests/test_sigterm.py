"""SIGTERM (batch schedulers, ``timeout``, ``docker stop``, systemd) is stopped like Ctrl-C.

``nndl train`` finishes the step SIGTERM came in, saves, and exits 143 with the line that
resumes it, and the resumed run equals an uninterrupted one bit for bit; outside a step it
stops at once, leaving no half-written file and no held lock. The Solver API holds
SIGTERM to the step boundary and raises :class:`nndl.interrupts.Terminated`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from signal import SIGINT, SIGTERM

import numpy as np
import pytest
from _cifar import write_synthetic_cifar10
from _signals import (
    assert_same_solver_state,
    resume_after_signal,
    signal_between_updates,
    signal_from_outside,
)
from test_misuse import (  # the run folders and helpers of the Ctrl-C tests
    assert_same_run,
    driver,
    environment,
    nndl,
    npz_arrays,
    train_args,
)

from nndl.interrupts import StepBoundaryInterrupts, Terminated, raise_terminated
from nndl.models import ConvNet
from nndl.optim import adam
from nndl.solver import Solver


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return {"cifar": write_synthetic_cifar10(tmp_path_factory.mktemp("data") / "a",
                                             n_per_batch=40, n_test=40)}  # fmt: skip


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data) -> Path:
    """The uninterrupted 3-epoch run every stopped one must end up equal to."""
    run = tmp_path_factory.mktemp("straight") / "run"
    proc = nndl(*train_args(data, run))
    assert proc.returncode == 0, proc.stderr
    return run


def sigterm_default() -> None:
    """preexec_fn: the child starts with SIGTERM's default disposition whatever ours is."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def saved_iteration(path: Path) -> int:
    return json.loads(str(npz_arrays(path)["meta"]))["solver"]["iteration"]


def assert_nothing_left(run: Path) -> None:
    """No temp file of a cut-off write, and the lock free for the next run."""
    assert not list(run.glob(".*.tmp-*")), sorted(p.name for p in run.iterdir())
    fcntl = pytest.importorskip("fcntl")
    with open(run / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


# --- nndl train -------------------------------------------------------------------------


@pytest.mark.parametrize("at", [7, 10])  # mid-epoch 2; the last step of epoch 2
def test_sigterm_mid_step_then_resume_equals_an_uninterrupted_run(tmp_path, data, straight, at):
    run = tmp_path / "run"
    proc = driver(f"sigterm-update:{at}", *train_args(data, run))
    assert proc.returncode == 143, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"terminated; continue with: nndl train --out {run} --resume" in proc.stderr
    assert "stopped early: terminated (SIGTERM)" in proc.stdout
    assert saved_iteration(run / "checkpoint.npz") == at  # the step SIGTERM came in, done
    assert_nothing_left(run)
    resumed = nndl("train", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, straight)


def test_a_real_sigterm_from_outside(tmp_path, data):
    """SIGTERM sent by another process at whatever point training has reached."""
    fast = ["--batch-size", "4"]  # 25 steps per epoch
    reference = tmp_path / "straight"
    assert nndl(*train_args(data, reference, *fast)).returncode == 0
    run = tmp_path / "run"
    code, err = signal_from_outside(train_args(data, run, *fast), environment(), SIGTERM)
    resume_after_signal(run, code, err, 143, nndl)
    assert code == 0 or "terminated" in err, err
    assert_same_run(run, reference)


def test_sigterm_during_the_final_save_keeps_the_last_checkpoint(tmp_path, data, straight):
    """A second SIGTERM while the checkpoint saved on the way out is being moved into
    place: that write is abandoned whole, the epoch-1 checkpoint stays and resumes."""
    run = tmp_path / "run"
    proc = driver("sigterm-final:7", *train_args(data, run))
    assert proc.returncode == 143, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "nndl train: terminated", proc.stderr
    assert saved_iteration(run / "checkpoint.npz") == 5  # complete, as of the epoch-1 end
    assert_nothing_left(run)
    resumed = nndl("train", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, straight)


def test_sigterm_before_training_leaves_an_empty_folder_free(tmp_path, data, straight):
    run = tmp_path / "run"
    proc = driver("sigterm-load", *train_args(data, run))
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == "nndl train: terminated", proc.stderr
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written yet
    assert_nothing_left(run)
    again = nndl(*train_args(data, run))  # the same command, not refused
    assert again.returncode == 0, again.stderr
    assert_same_run(run, straight)


# --- the Solver API ---------------------------------------------------------------------


def _solver(update_rule=adam) -> Solver:
    """A batch-norm ConvNet with dropout: running statistics and the model's RNG move."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3, 8, 8)), rng.integers(4, size=30)
    data = {"X_train": X[:24], "y_train": y[:24], "X_val": X[24:], "y_val": y[24:]}
    model = ConvNet(input_dim=(3, 8, 8), num_filters=(3,), hidden_dims=(5,), num_classes=4,
                    dropout=0.8, dtype=np.float64, seed=0)  # fmt: skip
    return Solver(model, data, update_rule=update_rule, optim_config={"learning_rate": 1e-2},
                  batch_size=6, num_epochs=3, verbose=False, seed=0)  # fmt: skip


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises Terminated in this process for the test (as under ``nndl``): a
    SIGTERM that is not held then fails the test instead of ending the suite."""
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_the_solver_holds_sigterm_to_the_step_boundary(tmp_path, sigterm_raises):
    reference = _solver()
    reference.train()
    first = _solver(signal_between_updates(SIGTERM, 7))
    with pytest.raises(Terminated) as caught:
        first.train()
    assert isinstance(caught.value, KeyboardInterrupt)  # Ctrl-C handling applies too
    assert first.iteration == 7  # the step SIGTERM came in was completed
    assert signal.getsignal(signal.SIGTERM) is raise_terminated  # restored
    path = first.save_checkpoint(tmp_path / "c.npz")
    resumed = _solver()
    resumed.load_checkpoint(path)
    resumed.train()
    assert_same_solver_state(reference, resumed)


def test_a_sigterm_handler_of_the_program_is_kept():
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        solver = _solver(signal_between_updates(SIGTERM, 7))
        solver.train()  # not stopped: the program decides what SIGTERM means
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls == [signal.SIGTERM] and solver.iteration == solver.num_iterations


@pytest.mark.parametrize("order", [(SIGTERM, SIGINT), (SIGINT, SIGTERM)])
def test_sigint_and_sigterm_in_one_step_raise_terminated(sigterm_raises, order):
    with StepBoundaryInterrupts() as interrupts:
        try:
            for signum in order:
                signal.raise_signal(signum)
        except KeyboardInterrupt:  # not held: fail this test, not the whole session
            pytest.fail(f"signal {signum} was not held")
        held = interrupts.pending
        with pytest.raises(Terminated):  # the stronger request wins
            interrupts.check()
        interrupts.check()  # nothing left pending
    assert held


def test_sigterm_in_a_script_with_the_default_disposition(tmp_path):
    """A user's script (SIGTERM not handled): held to the boundary, then Terminated."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from _signals import signal_between_updates
        from test_sigterm import _solver
        from nndl.interrupts import Terminated
        solver = _solver(signal_between_updates(signal.SIGTERM, 4))
        try:
            solver.train()
        except Terminated:
            print(solver.iteration, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(script)], env=environment(), capture_output=True, text=True,
        timeout=60, preexec_fn=sigterm_default,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "True"]
