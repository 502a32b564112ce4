"""The command line of ``nndl tune``: its parser and the checks of its own flags (the
``nndl train`` part after ``--`` is checked by :mod:`nndl.tune.train_cli`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from .errors import TuneError
from .space import DEFAULT_SPACE

__all__ = ["PROG", "DEFAULT_N_TRIALS", "build_parser", "split_argv", "check_own_flags"]

PROG = "nndl tune"
DEFAULT_N_TRIALS = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [options] [-- NNDL_TRAIN_FLAGS ...]",
        description="Search nndl train's flags with Optuna. Each trial is an 'nndl train' "
        "run with the flags after '--' (fixed) and flags drawn from the search space, in "
        "its own run folder OUT/trial-NNNN; after each epoch it reports val_acc, so the "
        "pruner can stop poor trials early. Workers started with the same --study and "
        "--storage share one study; running a command again continues it.",
        epilog="The default search space, for the default model (--show-space prints it "
        "as JSON to copy into a --space file):  "
        + "  ".join(f"{k} {_describe(v)};" for k, v in DEFAULT_SPACE.items()),
    )
    s = p.add_argument_group("study")
    s.add_argument("--study", default="nndl", metavar="NAME", help="study name (default: nndl)")
    s.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://... for "
        "many machines, journal:PATH for a journal file on a shared file system, "
        "sqlite:///PATH.db (default: sqlite in --out, for one machine)",
    )
    s.add_argument(
        "--out",
        default="runs/tune",
        metavar="DIR",
        help="folder of the trials' run folders, the plots and, by default, the study "
        "(default: runs/tune)",
    )
    s.add_argument(
        "--space",
        metavar="FILE.json",
        help="search space: a JSON object of nndl train flags to distributions "
        "(default: the space below; a study keeps the space it was created with)",
    )
    s.add_argument("--show-space", action="store_true", help="print the search space and exit")
    r = p.add_argument_group("how long")
    r.add_argument(
        "--n-trials",
        type=int,
        metavar="N",
        help=f"trials this worker runs (default: {DEFAULT_N_TRIALS}, or no limit with "
        "--max-trials or --timeout; 0 only creates the study)",
    )
    r.add_argument(
        "--max-trials",
        type=int,
        metavar="N",
        help="stop once the study holds N finished (complete or pruned) trials, counting "
        "every worker's; a rerun of the command finishes what is left",
    )
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="start no trial after SECONDS (the running one finishes)",
    )
    a = p.add_argument_group("search")
    a.add_argument(
        "--seed",
        type=int,
        help="seed of the TPE sampler (default: random; give each worker its own)",
    )
    a.add_argument(
        "--pruner",
        choices=["median", "hyperband", "none"],
        default="median",
        help="stop trials whose val_acc is below the median of earlier trials at the same "
        "epoch, or Hyperband's successive halving (default: median)",
    )
    a.add_argument(
        "--prune-after",
        type=int,
        default=1,
        metavar="EPOCHS",
        help="the first epoch after which a trial may be stopped (default: 1)",
    )
    a.add_argument(
        "--startup-trials",
        type=int,
        default=5,
        metavar="N",
        help="median pruner: trials that run in full before it compares (default: 5)",
    )
    a.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        metavar="SECONDS",
        help="a running trial's worker records that it is alive every SECONDS; a trial "
        "silent for three times that (its worker killed) is failed and queued again, "
        "resuming its run folder (SQL storages; default: 60)",
    )
    o = p.add_argument_group("results")
    o.add_argument(
        "--report",
        action="store_true",
        help="run no trial: print the trials, the best one's nndl train command and write "
        "the plots (history.png, importance.png, intermediate.png in --out)",
    )
    o.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    return p


def _describe(d: dict[str, Any]) -> str:
    if d["type"] == "categorical":
        return "one of " + ", ".join(
            " ".join(map(str, c)) if isinstance(c, list) else str(c) for c in d["choices"]
        )
    return f"{d['type']} in [{d['low']:g}, {d['high']:g}]" + (" (log)" if d.get("log") else "")


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """(nndl tune's own words, the nndl train words after the first '--' or None)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, None


def check_own_flags(args: argparse.Namespace) -> None:
    rules = [
        ("--n-trials", args.n_trials, 0),
        ("--max-trials", args.max_trials, 1),
        ("--prune-after", args.prune_after, 1),
        ("--startup-trials", args.startup_trials, 0),
        ("--heartbeat", args.heartbeat, 1),
        ("--seed", args.seed, 0),
    ]
    for flag, value, low in rules:
        if value is not None and value < low:
            raise TuneError(f"{flag} must be an integer >= {low}, got {value}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise TuneError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    if not args.study.strip():
        raise TuneError("--study is empty; expected a name")
    if not args.out.strip():
        raise TuneError("--out is empty (an unset shell variable?); expected a folder")
    if args.storage is not None and not args.storage.strip():
        raise TuneError("--storage is empty (an unset shell variable?); expected a URL")
