"""How a tune worker stops: failures of the machine told from bugs, the running trial
marked failed with its reason, an interrupted trial (Ctrl-C or SIGTERM) queued again."""

from __future__ import annotations

import sys
from typing import Any

from . import storage
from .runner import FatalTrialError, TrialSetup

__all__ = ["expected_failure", "fail_running", "note_error", "requeue"]


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
    """Mark this worker's running trial failed with ``reason`` (Optuna may have marked it
    already: the error attribute was then recorded by :func:`note_error`); a note for the
    error line when the storage takes neither."""
    import optuna

    trial, setup.trial = setup.trial, None
    if trial is None:
        return ""
    try:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if frozen.state == optuna.trial.TrialState.RUNNING:
            if not frozen.user_attrs.get("error"):
                trial.set_user_attr("error", reason)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except Exception:  # the storage itself failed: the heartbeat retries the trial later
        return f" (trial {trial.number} stays RUNNING: the storage could not mark it failed)"
    return f" (trial {trial.number} is marked failed)"


def note_error(trial: Any, exc: BaseException) -> None:
    """Record why ``trial`` failed while it is still RUNNING (Optuna marks a trial whose
    objective raised as failed before the worker sees the error, and a finished trial's
    attributes can no longer change). Best effort: the storage may be what failed."""
    if trial.user_attrs.get("error"):
        return
    reason = expected_failure(exc) or f"{type(exc).__name__}: {exc}"
    try:
        trial.set_user_attr("error", reason)
    except Exception:
        pass


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
