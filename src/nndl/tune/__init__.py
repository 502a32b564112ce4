"""``nndl tune``: hyperparameter search over ``nndl train`` with Optuna.

Each trial is a normal ``nndl train`` run (a subprocess, its own run folder), so
anything ``nndl train`` can do a trial can do, and a trial's folder is an ordinary run
folder (``nndl evaluate``, ``--resume``). Optuna samples the flags (TPE), prunes poor
trials from the accuracies they report after each epoch (median or Hyperband), and
keeps the study in a storage that is an SQLite file for one machine or a PostgreSQL
server for many. Needs the ``tune`` extra: ``pip install 'nndl[tune]'``.

Modules: :mod:`~nndl.tune.command` (the command line), :mod:`~nndl.tune.space` (search
spaces), :mod:`~nndl.tune.runner` (one trial), :mod:`~nndl.tune.storage`,
:mod:`~nndl.tune.report` and :mod:`~nndl.tune.train_cli` (all it takes from the rest of
nndl). Importing this package does not import Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import TuneError
from .space import DEFAULT_SPACE, SearchSpace, load_space

__all__ = ["main", "build_parser", "TuneError", "DEFAULT_SPACE", "SearchSpace", "load_space"]


def main(argv: Sequence[str] | None = None) -> int:
    """``nndl tune ARGV``; returns the exit status (see :func:`nndl.tune.command.main`)."""
    from .command import main as run_main

    return run_main(argv)


def build_parser():
    """The argument parser of ``nndl tune`` (its own flags; nndl train's come after '--')."""
    from .options import build_parser as build

    return build()
