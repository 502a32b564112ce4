"""Everything ``nndl tune`` takes from the rest of nndl, in one place.

A trial is a real ``nndl train`` run in a subprocess, and the tuner reads back only its
run folder's files (``metrics.jsonl``, ``config.json``). Before the first trial it checks
the fixed flags and the search space with the train command's own parser and checks (the
code ``nndl train`` runs before it touches its run folder), so a typo fails at once, not
in every trial. For its own files it uses nndl's atomic writer, and the command line's
Agg backend for plots. If those move, only this module follows.
"""

from __future__ import annotations

import argparse
import io
import os
import re
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from .errors import TuneError

__all__ = [
    "parse_train_flags",
    "flags_set_by",
    "is_train_flag",
    "locate_data",
    "require_matplotlib",
    "atomic_write_bytes",
    "save_figure",
]

# Flags nndl tune sets itself for every trial.
OWN_FLAGS = {"out": "--out", "resume": "--resume"}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from nndl.cli.flags import add_train_flags

    if any(w in ("-h", "--help") for w in argv):
        raise TuneError("--help is not an nndl train flag to fix; see 'nndl train --help'")
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            parser = argparse.ArgumentParser(prog="nndl train")
            add_train_flags(parser)
            return parser.parse_args(list(argv))
        except SystemExit:  # argparse reports the mistake and exits; keep its message
            lines = err.getvalue().strip().splitlines() or ["invalid flags"]
            raise TuneError(re.sub(r"^nndl( train)?: error: ", "", lines[-1])) from None


def parse_train_flags(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``nndl train`` flags and run the checks ``nndl train`` makes before it starts
    (ranges, sizes, the model's parameter plan); a :class:`TuneError` names the problem."""
    from nndl.cli.errors import CLIError
    from nndl.cli.flags import check_flags, settings_from_args
    from nndl.cli.model_plan import planned_input, preflight

    args = _parse(argv)
    try:
        settings = settings_from_args(args)
        preflight(settings, check_flags(args), *planned_input(settings))
    except (CLIError, ValueError) as exc:
        raise TuneError(str(exc)) from None
    return args


def is_train_flag(word: str) -> bool:
    """Whether ``word`` (``--flag`` or ``--flag=value``) is an ``nndl train`` flag."""
    from nndl.cli.flags import add_train_flags

    if not word.startswith("-"):
        return False
    parser = argparse.ArgumentParser(prog="nndl train", add_help=False)
    add_train_flags(parser)
    return word.split("=", 1)[0] in parser._option_string_actions


def flags_set_by(argv: Sequence[str]) -> set[str]:
    """The settings (argparse destinations) that ``argv`` sets, however it spells them
    (abbreviations, ``--flag=value``)."""
    given, empty = vars(_parse(argv)), vars(_parse([]))
    return {k for k, v in given.items() if v != empty[k]}


def locate_data(data_dir: str | None, dataset: str | None = None, image_size=None,
                channels: int | None = None) -> Path:  # fmt: skip
    """The data the trials will read, made ready once now rather than by every trial at
    the same time: CIFAR-10 (or another named set) downloaded if it is missing, an image
    folder decoded into its cache."""
    from nndl.data import resolve_data_dir
    from nndl.datasets import DATASETS, prepare_dataset

    try:
        if dataset in (None, "cifar10"):
            return resolve_data_dir(data_dir, download=True, progress=True)
        if os.path.isdir(dataset) and dataset not in DATASETS:
            return prepare_dataset(dataset, image_size=image_size, channels=channels)
        return prepare_dataset(dataset, data_dir, progress=True)
    except (OSError, ValueError) as exc:
        raise TuneError(str(exc)) from None


def require_matplotlib() -> None:
    from nndl.cli.errors import CLIError
    from nndl.cli.report import require_matplotlib as require

    try:
        require()
    except CLIError as exc:
        raise TuneError(str(exc)) from None


def atomic_write_bytes(path, data: bytes) -> None:
    from nndl.io.atomic import atomic_write_bytes as write

    write(path, data)


def save_figure(fig, path) -> None:
    from nndl.plots import save_figure as save

    save(fig, path)
