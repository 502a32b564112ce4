"""One trial: a real ``nndl train`` run in a subprocess, followed through its run folder.

The worker starts ``nndl train --out RUN_DIR FIXED_FLAGS SAMPLED_FLAGS`` and reads
``RUN_DIR/metrics.jsonl`` (rewritten atomically at each epoch end) while it runs,
reporting each epoch's ``val_acc`` to the Optuna trial. When the pruner says stop, the
run gets one SIGINT: ``nndl train`` stops at the next step boundary, saves its
checkpoint and exits 130, so a pruned run folder is complete and resumable. A
subprocess keeps each trial's memory, threads and any crash out of the worker.

A trial queued again after its worker vanished (Optuna copies its parameters and user
attributes) continues the run folder it inherits with ``nndl train --resume``.
"""

from __future__ import annotations

import errno
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.jsonfile import loads_bounded, read_bounded, read_json
from ..train.interrupts import Terminated  # the one SIGTERM exception, as nndl train's
from ._child import PARENT_ENV
from .space import SearchSpace

__all__ = [
    "TrainRunError",
    "FatalTrialError",
    "TrialSetup",
    "run_trial",
    "read_metrics",
]

POLL_SECONDS = 0.2
# A stopped run saves its checkpoint before it exits; a large model on a slow disk takes
# seconds. Past this, it is killed (its previous checkpoint is intact: atomic writes).
STOP_SECONDS = 120
LOG_NAME = "train.log"


class TrainRunError(Exception):
    """The trial's ``nndl train`` failed; the study goes on with the next trial."""


class FatalTrialError(Exception):
    """The trial failed in a way every later trial would too (a full disk): the worker
    stops with an error instead of failing trial after trial."""


# nndl train's exit status after Ctrl-C or SIGTERM: it saved its checkpoint and stopped.
INTERRUPTED = {130: KeyboardInterrupt, 143: Terminated}


@dataclass
class TrialSetup:
    """What every trial of this worker shares."""

    out: Path
    fixed: list[str]
    space: SearchSpace
    say: Callable[[str], None] = print
    current: int | None = field(default=None)  # the number of the trial running now
    trial: Any = field(default=None)  # the optuna.Trial running now


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of ``run_dir/metrics.jsonl`` (those with an integer ``epoch``
    and a finite ``val_acc``); none while the file does not exist."""
    try:
        text = read_bounded(run_dir / "metrics.jsonl")
    except (OSError, ValueError):  # not there yet, or not ours
        return []
    records = []
    for line in text.splitlines():
        try:
            r = loads_bounded(line)
        except ValueError:  # invalid, or nested too deep
            continue
        if (
            isinstance(r, dict)
            and isinstance(r.get("epoch"), int)
            and isinstance(r.get("val_acc"), int | float)
            and math.isfinite(r["val_acc"])
        ):
            records.append(r)
    return records


def _planned_epochs(run_dir: Path) -> int | None:
    try:
        config = read_json(run_dir / "config.json")
        epochs = config["settings"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) else None


def _run_dir_for(trial: Any, out: Path) -> tuple[Path, bool]:
    """(run folder, resume?): a retried trial continues the folder it inherits when this
    machine has it; any other trial gets ``out/trial-NNNN``."""
    inherited = trial.user_attrs.get("run_dir")
    if isinstance(inherited, str) and Path(inherited).is_dir():
        path = Path(inherited)
        return path, (path / "config.json").is_file()
    return out / f"trial-{trial.number:04d}", False


def _last_error(run_dir: Path) -> str:
    """The line of the trial's log that says why it failed (nndl's one-line error)."""
    try:
        with open(run_dir / LOG_NAME, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "no log"
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or ["no output"])[-1]


def _start(argv: list[str], run_dir: Path, number: int) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    with open(run_dir / LOG_NAME, "ab") as log:
        log.write(f"# nndl tune, trial {number}: {shlex.join(['nndl', *argv])}\n".encode())
        log.flush()
        # Its own session: a Ctrl-C at the terminal reaches the worker, which passes on
        # exactly one SIGINT (a second one would cut the run's final checkpoint short).
        return subprocess.Popen(
            [sys.executable, "-m", "nndl.tune._child", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    """Stop a running ``nndl train`` as Ctrl-C (or SIGTERM) would, and wait for it to save."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_trial(trial: Any, setup: TrialSetup) -> float:
    """Train one trial's run; its best ``val_acc``. Raises ``optuna.TrialPruned`` when the
    pruner stops it and :class:`TrainRunError` when ``nndl train`` fails."""
    import optuna

    # A trial queued again carries the user attributes of the one it repeats.
    retry_of = trial.user_attrs.get("trial")
    run_dir, resume = _run_dir_for(trial, setup.out)
    flags = setup.space.sample(trial)
    argv = ["train", "--out", str(run_dir), *setup.fixed, *flags]
    trial.set_user_attr("trial", trial.number)
    trial.set_user_attr("flags", flags)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("command", shlex.join(["nndl", *argv]))
    trial.set_user_attr("host", socket.gethostname())
    note = ""
    if retry_of is not None:
        note = f" (trial {retry_of} again, " + ("resuming" if resume else "from the start") + ")"
    setup.say(f"trial {trial.number}{note}: {shlex.join(flags)}  [{run_dir}]")
    if resume:
        argv.append("--resume")
    setup.current, setup.trial = trial.number, trial

    records = read_metrics(run_dir)
    planned = _planned_epochs(run_dir)
    if resume and records and planned is not None and records[-1]["epoch"] >= planned:
        proc = None  # the run had finished when its worker vanished
    else:
        proc = _start(argv, run_dir, trial.number)
    reported: set[int] = set()
    stop_with = signal.SIGINT
    try:
        while True:
            finished = proc is None or proc.poll() is not None
            records = read_metrics(run_dir)
            for r in records:
                if r["epoch"] in reported:
                    continue
                reported.add(r["epoch"])
                trial.report(float(r["val_acc"]), r["epoch"])
                if trial.should_prune():
                    if proc is not None:
                        _stop(proc)
                    trial.set_user_attr("stopped_at_epoch", r["epoch"])
                    raise optuna.TrialPruned(f"val_acc {r['val_acc']:.4f} at epoch {r['epoch']}")
            if finished:
                break
            try:
                proc.wait(POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    except Terminated:
        stop_with = signal.SIGTERM
        trial.set_user_attr("error", "terminated (SIGTERM)")
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        raise
    finally:
        if proc is not None:
            _stop(proc, stop_with)  # Ctrl-C, SIGTERM or a worker error: it saves and stops
    code = 0 if proc is None else proc.returncode
    if code in INTERRUPTED:  # stopped from outside (the job's signal reached it first)
        trial.set_user_attr("error", f"nndl train was interrupted (exit status {code})")
        raise INTERRUPTED[code]()
    if code != 0:
        message = f"nndl train exited with status {code}: {_last_error(run_dir)}"
        trial.set_user_attr("error", message)
        if os.strerror(errno.ENOSPC) in message:
            raise FatalTrialError(
                f"trial {trial.number}: {message}; free some space, then run the command again"
            )
        raise TrainRunError(message)
    if not records:
        message = f"nndl train finished no epoch: {_last_error(run_dir)}"
        trial.set_user_attr("error", message)
        raise TrainRunError(message)
    return max(float(r["val_acc"]) for r in records)
