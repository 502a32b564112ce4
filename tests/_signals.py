"""Helpers of the Ctrl-C and SIGTERM tests: a signal sent at a chosen point of training,
or from outside at whatever point it has reached, and the state that must come out equal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nndl.optim import adam
from nndl.solver import Solver


def signal_between_updates(signum: int, step: int, num_params: int = 10) -> Callable:
    """Adam, sending this process ``signum`` after the third parameter update of ``step``
    (of a model with ``num_params`` parameters): the model is then half updated."""
    calls = [0]

    def rule(w, dw, config=None):
        calls[0] += 1
        if calls[0] == num_params * (step - 1) + 3:
            os.kill(os.getpid(), signum)
        return adam(w, dw, config)

    return rule


def assert_same_solver_state(a: Solver, b: Solver) -> None:
    """Histories, counters, parameters, Adam's moments and running statistics agree."""
    assert a.loss_history == b.loss_history and a.val_acc_history == b.val_acc_history
    assert (a.epoch, a.iteration) == (b.epoch, b.iteration)
    for k in a.model.params:
        assert np.array_equal(a.training_params()[k], b.training_params()[k]), k
        assert np.array_equal(a.optim_configs[k]["m"], b.optim_configs[k]["m"]), k
    for k, v in a.model.state_arrays().items():
        assert np.array_equal(v, b.model.state_arrays()[k]), k


def signal_from_outside(argv: list, env: dict, signum: int) -> tuple[int, str]:
    """Run ``python -m nndl ARGV`` and send it ``signum`` from this process as soon as it
    prints its first epoch line (wherever training has got to by then); its exit status
    and stderr. The child starts with the signal's default disposition, whatever the
    suite inherited (a background job starts with SIGINT ignored)."""
    cmd = [sys.executable, "-u", "-m", "nndl", *map(str, argv)]

    def default_disposition() -> None:
        signal.signal(signum, signal.SIG_DFL)

    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_disposition,
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def resume_after_signal(run: Path, code: int, err: str, expected: int, nndl: Callable) -> None:
    """The stopped run exited ``expected`` (or 0: the signal came after the last step) with
    no traceback; resume it to the end."""
    assert code in (0, expected) and "Traceback" not in err, err
    if code == expected:
        resumed = nndl("train", "--out", run, "--resume")
        # (a signal that came after the last step leaves nothing to resume)
        assert resumed.returncode == 0 or "already trained 3" in resumed.stderr, resumed.stderr
