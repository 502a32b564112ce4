"""How a tune worker stops: failures of the machine told from bugs, the running trial
marked failed with its reason, an interrupted trial queued again, SIGTERM stopped like
Ctrl-C."""

from __future__ import annotations

import signal
import sys
from typing import Any

from ..train.interrupts import Terminated
from . import storage
from .runner import FatalTrialError, TrialSetup

__all__ = ["SigtermStops", "expected_failure", "fail_running", "requeue"]


def expected_failure(exc: BaseException) -> str | None:
    """What went wrong, when ``exc`` (or the error behind it: Optuna can replace a failed
    storage write with an AssertionError) is a failure of the machine, not a bug: a full
    disk, an unwritable file, a storage that fails; None otherwise."""
    import optuna
    import sqlalchemy.exc

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    storage_errors = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
    for e in chain:
        if isinstance(e, FatalTrialError):
            return str(e)
    for e in chain:
        if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
            where = f"{e.filename}: " if e.filename else ""
            return where + (e.strerror or str(e))
    for kind in storage_errors:  # the database's own error before Optuna's wrapper
        for e in chain:
            if isinstance(e, kind):
                return f"the storage failed: {storage.first_line(e)}"
    return None


def fail_running(study: Any, setup: TrialSetup, reason: str) -> str:
    """Record why this worker's running trial stopped and mark it failed; a note for the
    error line when the storage takes neither."""
    import optuna

    trial, setup.trial = setup.trial, None
    if trial is None:
        return ""
    try:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if frozen.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL):
            if not frozen.user_attrs.get("error"):
                trial.set_user_attr("error", reason)
        if frozen.state == optuna.trial.TrialState.RUNNING:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except Exception:  # the storage itself failed: the heartbeat retries the trial later
        return f" (trial {trial.number} stays RUNNING: the storage could not mark it failed)"
    return f" (trial {trial.number} is marked failed)"


def requeue(study: Any, setup: TrialSetup) -> None:
    """Queue the trial a Ctrl-C interrupted again (Optuna's retry of stale trials): the
    next worker continues its run folder."""
    import optuna

    if setup.current is None:
        return
    for t in study.get_trials(deepcopy=False):
        if t.number == setup.current and t.state == optuna.trial.TrialState.FAIL:
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=storage.MAX_RETRY)(study, t)
            print(
                f"trial {t.number} is queued again; it resumes {t.user_attrs.get('run_dir')} "
                "when the study goes on",
                file=sys.stderr,
            )


class SigtermStops:
    """While a command runs, SIGTERM raises :class:`Terminated` (stopped like Ctrl-C: the
    running trial's nndl train gets SIGTERM, saves and stops). A second SIGTERM is ignored
    while that stop runs; it is bounded by the runner's STOP_SECONDS."""

    def __enter__(self):
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False
