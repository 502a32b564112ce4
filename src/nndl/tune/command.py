"""``nndl tune``: search ``nndl train`` flags with Optuna, on one machine or many.

Every trial is a normal ``nndl train`` run in its own folder ``--out/trial-NNNN`` (see
:mod:`nndl.tune.runner`); the study (trials, parameters, per-epoch accuracies) lives in
an Optuna storage, by default ``--out/study.db`` (see :mod:`nndl.tune.storage`).
Workers started with the same ``--study`` and ``--storage`` share one study, and
running a command again continues it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..interrupts import Terminated, raising_on_sigterm
from ..io.jsonfile import read_json
from . import report, stopping, storage, train_cli
from .errors import TuneError
from .options import DEFAULT_N_TRIALS, PROG, build_parser, check_own_flags, split_argv
from .runner import TrainRunError, TrialSetup, run_trial
from .space import SearchSpace, load_space

__all__ = ["main", "run"]

MARKER = "tune.json"  # which study an --out folder belongs to


def _check_train_part(fixed: list[str], space: SearchSpace | None) -> argparse.Namespace:
    """Check the fixed flags and every value range of the space (if given) against
    ``nndl train`` before any trial: a typo fails now, not in every trial."""
    try:
        fixed_args = train_cli.parse_train_flags(fixed)
        fixed_dests = train_cli.flags_set_by(fixed)
    except TuneError as exc:
        raise TuneError(f"the nndl train flags after '--': {exc}") from None
    own = sorted(train_cli.OWN_FLAGS[d] for d in fixed_dests & set(train_cli.OWN_FLAGS))
    if own:
        raise TuneError(
            f"{', '.join(own)} after '--': nndl tune sets it for each trial "
            "(run folders are --out/trial-NNNN)"
        )
    for flag, candidates in (space.candidates() if space else {}).items():
        for words in candidates:
            value = (" ".join(words[1:]) or words[0]) if words else "null (left out)"
            try:
                dests = train_cli.flags_set_by(words)
                train_cli.parse_train_flags([*fixed, *words])
            except TuneError as exc:
                raise TuneError(f"{space.source}: {flag} {value}: {exc}") from None
            if dests & set(train_cli.OWN_FLAGS):
                raise TuneError(f"{space.source}: {flag} is set by nndl tune for each trial")
            if dests & fixed_dests:
                raise TuneError(
                    f"{flag} is both fixed (after '--') and searched ({space.source}); drop one"
                )
    return fixed_args


def _study_config(
    study: Any, fixed: list[str] | None, space: SearchSpace | None
) -> tuple[list[str], SearchSpace]:
    """The study's fixed flags and space: stored by the worker that created it; a later
    worker gives the same ones or none (and gets the stored ones)."""
    stored = study.user_attrs
    stored_fixed, stored_space = stored.get("train_flags"), stored.get("space")
    if stored_fixed is None:  # a new study: this worker defines it
        fixed = [] if fixed is None else fixed
        space = load_space(None) if space is None else space
        study.set_user_attr("train_flags", fixed)
        study.set_user_attr("space", space.spec)
        return fixed, space
    name = study.study_name
    if fixed is not None and fixed != stored_fixed:
        raise TuneError(
            f"study {name!r} runs nndl train with {_words(stored_fixed)} after '--', not "
            f"{_words(fixed)}; give the same flags (or none, to use the study's), or "
            "choose another --study"
        )
    if space is not None and _canon(space.spec) != _canon(stored_space):
        raise TuneError(
            f"study {name!r} searches another space than {space.source} (its own: "
            f"{_canon(stored_space)}); leave --space out to use the study's, or choose "
            "another --study"
        )
    return list(stored_fixed), SearchSpace(stored_space, f"the space of study {name!r}")


def _words(argv: list[str]) -> str:
    return repr(" ".join(argv)) if argv else "no flags"


def _canon(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True)


def _claim_out(out: Path, study: str, url: str | None) -> None:
    """Make ``out`` the folder of this study (trial-NNNN folders of two studies would
    collide): ``out/tune.json`` names its study; another study is refused."""
    _make_out(out)
    marker = out / MARKER
    mine = {"study": study, "storage": None if url is None else storage.describe(url)}
    if marker.is_file():
        try:
            theirs = read_json(marker)
        except (OSError, ValueError) as exc:
            raise TuneError(
                f"{marker} is damaged ({exc}); remove it or choose another --out"
            ) from None
        if theirs != mine:
            raise TuneError(
                f"--out {out} holds the trials of study {theirs.get('study')!r} in "
                f"{theirs.get('storage') or 'its own study.db'} ({marker}); choose another --out"
            )
        return
    train_cli.atomic_write_bytes(marker, (json.dumps(mine, indent=2) + "\n").encode())


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise TuneError("nndl tune needs Optuna: pip install 'nndl[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the worker prints its own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _pruner(args: argparse.Namespace) -> Any:
    import optuna

    if args.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=args.startup_trials, n_warmup_steps=args.prune_after - 1
        )
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=args.prune_after)
    return optuna.pruners.NopPruner()


def _say(line: str) -> None:
    print(line, flush=True)


def _open_study(args: argparse.Namespace, url: str, out: Path) -> Any:
    import optuna

    if args.storage is None:
        _make_out(out)
    with storage.creation_lock(url):
        st = storage.open_storage(url, args.heartbeat)
        if args.report:
            try:
                return optuna.load_study(study_name=args.study, storage=st)
            except KeyError:
                names = optuna.get_all_study_names(st)
                raise TuneError(
                    f"no study {args.study!r} in {storage.describe(url)} (it holds "
                    f"{', '.join(map(repr, names)) or 'none'})"
                ) from None
        study = optuna.create_study(
            study_name=args.study,
            storage=st,
            sampler=_sampler(args.seed),
            pruner=_pruner(args),
            direction="maximize",
            load_if_exists=True,
        )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise TuneError(f"study {args.study!r} minimises; nndl tune maximises val_acc")
    return study


def _sampler(seed: int | None) -> Any:
    import optuna

    if seed is None:
        return optuna.samplers.TPESampler(constant_liar=True)
    from .sampler import TrialSeededSampler

    return TrialSeededSampler(seed)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TuneError(f"--out {out} is a file; expected a folder (or a path to create)")


def _make_out(out: Path) -> None:
    """Create ``out`` and check that this worker can write in it."""
    _check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise TuneError(f"--out {out}: cannot write in it ({exc.strerror or exc})") from None


def _report(study: Any, out: Path, plots: bool) -> None:
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    _say(f"study {study.study_name!r}: {len(trials)} trials" + (f" ({summary})" if trials else ""))
    if trials:
        _say(report.trial_table(trials))
    _say(report.best_summary(study))
    if plots and trials:
        written = report.write_plots(study, out, _say)
        if written:
            _say("wrote " + ", ".join(map(str, written)))


def run(args: argparse.Namespace) -> int:
    """Run ``nndl tune`` for parsed ``args`` (``args.train_flags``: the words after '--',
    or None); the exit status. Bad input raises :class:`TuneError`."""
    check_own_flags(args)
    fixed, space = args.train_flags, (load_space(args.space) if args.space else None)
    if args.show_space:
        print(json.dumps((space or load_space(None)).spec, indent=2))
        return 0
    if fixed is not None:
        # What this command gives, checked before the storage is touched; the whole (with
        # what an existing study holds) once the study is open.
        _check_train_part(fixed, space)
    optuna = _require_optuna()
    out = Path(args.out).expanduser()
    _check_out(out)
    url = args.storage or storage.default_url(out)
    if args.report and args.storage is None and not (out / storage.DEFAULT_DB).is_file():
        raise TuneError(
            f"no study in --out {out} (no {storage.DEFAULT_DB}); name --out or --storage"
        )
    study = _open_study(args, url, out)
    if args.report:
        _report(study, out, not args.no_plots)
        return 0
    fixed, space = _study_config(study, fixed, space)
    fixed_args = _check_train_part(fixed, space)
    _claim_out(out, args.study, args.storage)
    setup = TrialSetup(out, fixed, space, _say)
    return _optimize(optuna, study, args, url, setup, fixed_args)


def _optimize(optuna, study, args, url: str, setup: TrialSetup, fixed_args) -> int:
    out = setup.out
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    n_trials = args.n_trials
    if n_trials is None and args.max_trials is None and args.timeout is None:
        n_trials = DEFAULT_N_TRIALS
    callbacks = [_Progress(setup)]
    if args.max_trials is not None:
        finished = len(study.get_trials(deepcopy=False, states=states))
        if finished >= args.max_trials:
            _say(f"study {args.study!r} already holds {finished} finished trials")
            n_trials = 0
        callbacks.append(optuna.study.MaxTrialsCallback(args.max_trials, states=states))
    if n_trials != 0:
        train_cli.locate_data(fixed_args.data_dir, fixed_args.dataset, fixed_args.image_size,
                              fixed_args.channels)
        _say(
            f"study {args.study!r} in {storage.describe(url)}: nndl train "
            f"{' '.join(setup.fixed)}, searching {', '.join(setup.space.spec)}"
        )
    try:
        study.optimize(
            lambda trial: _objective(optuna, trial, setup),
            n_trials=n_trials,
            timeout=args.timeout,
            catch=(TrainRunError,),
            callbacks=callbacks,
            gc_after_trial=False,
        )
    except KeyboardInterrupt:
        stopping.requeue(study, setup)
        raise
    except Exception as exc:  # no trial may stay RUNNING after an orderly exit
        reason = stopping.expected_failure(exc)
        note = stopping.fail_running(study, setup, reason or f"{type(exc).__name__}: {exc}")
        if reason is None:
            raise
        raise TuneError(reason + note) from None
    _report(study, out, not args.no_plots)
    ran = callbacks[0].states
    if ran and all(s == optuna.trial.TrialState.FAIL for s in ran):
        _say("every trial of this worker failed; see the train.log in their run folders")
        return 1
    return 0


def _objective(optuna, trial: Any, setup: TrialSetup) -> float:
    """One trial's run; a failure other than pruning is recorded on the trial first."""
    try:
        return run_trial(trial, setup)
    except optuna.TrialPruned:
        raise
    except Exception as exc:
        stopping.note_error(trial, exc)
        raise


class _Progress:
    """Optuna callback: one line per finished trial; remembers the states."""

    def __init__(self, setup: TrialSetup):
        self.setup = setup
        self.states: list[Any] = []

    def __call__(self, study: Any, trial: Any) -> None:
        self.setup.current, self.setup.trial = None, None
        self.states.append(trial.state)
        epochs = max(trial.intermediate_values, default=0)
        took = f"{trial.duration.total_seconds():.1f}s" if trial.duration else "-"
        if trial.state.name == "COMPLETE":
            line = f"complete: val_acc {trial.value:.4f} after {epochs} epochs"
        elif trial.state.name == "PRUNED":
            line = f"pruned after epoch {epochs}: val_acc {trial.intermediate_values[epochs]:.4f}"
        else:
            line = "failed: " + trial.user_attrs.get("error", "see its train.log")
        self.setup.say(f"trial {trial.number} {line} ({took})")


def _parse(own: list[str]) -> argparse.Namespace:
    """Parse nndl tune's own words; nndl train flags among them get a hint to put them
    after '--' (argparse alone would only call them unrecognized)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(own)
    if extra:
        train = [w for w in extra if train_cli.is_train_flag(w)]
        hint = ""
        if train:
            hint = (
                f"; {train[0]} is an nndl train flag: put nndl train flags after '--' "
                f"({PROG} [options] -- {' '.join(extra)})"
            )
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nndl tune`` with ``argv`` (default ``sys.argv[1:]``, without 'tune'); the exit
    status: 0, 1 when every trial failed, 2 for bad input (one ``nndl tune: error:``
    line, no traceback), 130 after Ctrl-C, 143 after SIGTERM."""
    own, train = split_argv(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(own)
    except SystemExit as exc:  # --help, or argparse's own usage error (exit 2)
        return exc.code if isinstance(exc.code, int) else 2
    args.train_flags = train
    try:
        with raising_on_sigterm(ignore_repeats=True):
            return run(args)
    except TuneError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(
            f"{PROG}: terminated (SIGTERM); run the same command again to continue the study",
            file=sys.stderr,
        )
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")
        return 141
    except Exception as exc:  # a bug or a storage failure mid-run: one line, no traceback
        if os.environ.get("NNDL_DEBUG"):
            raise
        reason = stopping.expected_failure(exc)
        if reason is not None:
            print(f"{PROG}: error: {reason}", file=sys.stderr)
            return 2
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} (NNDL_DEBUG=1 shows the "
            "traceback)",
            file=sys.stderr,
        )
        return 1
