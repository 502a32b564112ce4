"""The ``nndl`` command: the parser of every command and the error reporting.

Commands (one module each, with ``add_parser(subparsers)`` and ``run(args)``):
``train`` (:mod:`nndl.cli.train`), ``evaluate``, ``predict``, ``summary`` and
``export``. ``nndl train`` writes a run folder (:mod:`nndl.cli.run_folder`); the others
read one. Progress bars, plots and image loading need the ``cli`` extra
(``pip install 'nndl[cli]'``), ``export`` the ``onnx`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..kernels.allocator import keep_freed_memory
from ..train.interrupts import Terminated, raising_on_sigterm
from . import evaluate, explain, export, predict, summary, train
from .errors import USER_ERRORS

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "summary": summary,
            "export": export, "explain": explain}  # fmt: skip
"""Command name -> its module (``add_parser(subparsers)``, ``run(args) -> exit status``)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nndl`` with every command."""
    parser = argparse.ArgumentParser(
        prog="nndl",
        description="Train, evaluate, inspect and export NumPy CNNs on CIFAR-10, other data "
        "sets and folders of your own images.",
        epilog="Run 'nndl COMMAND --help' for the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"nndl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    # Listed for --help only: main() hands 'nndl tune ...' to nndl.tune before parsing.
    sub.add_parser("tune", help="search hyperparameters with Optuna (nndl tune --help)",
                   add_help=False)  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nndl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input of any kind (flags, a missing, corrupt or crafted file, an unreadable image,
    too little memory) prints ``nndl COMMAND: error: ...`` on stderr and returns 2, as
    argparse does; Ctrl-C returns 130, SIGTERM 143 (``nndl train`` first finishes its
    step and saves). No input makes it print a traceback: anything else is reported as an
    internal error (exit 1; ``NNDL_DEBUG=1`` shows the traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()  # each training step reuses the last one's pages: a faster step
    if argv[:1] == ["tune"]:
        # nndl tune passes everything after '--' on to nndl train, which argparse's
        # subcommands cannot express; it parses its own command line.
        from ..tune import main as tune_main

        return tune_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    args.argv = argv
    prefix = f"{parser.prog} {args.command}"
    try:
        with raising_on_sigterm():  # SIGTERM unwinds like Ctrl-C: files, locks cleaned up
            return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")  # the interpreter's final flush must not fail
        return 141
    except Terminated:  # SIGTERM outside a training step (nndl train holds it to one)
        print(f"{prefix}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(
            f"{prefix}: error: out of memory{detail}; try a smaller --batch-size or model",
            file=sys.stderr,
        )
        return 2
    except USER_ERRORS as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line instead of a traceback
        if os.environ.get("NNDL_DEBUG"):
            raise
        print(
            f"{prefix}: internal error: {type(exc).__name__}: {exc} (a bug in nndl; "
            "NNDL_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
